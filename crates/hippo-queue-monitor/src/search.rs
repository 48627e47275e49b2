//! Flower's task search syntax (`/api/tasks?search=`): whitespace or `AND` for "and",
//! uppercase `OR`, parentheses, double quotes, and the qualifiers `name:`, `state:`,
//! `worker:`, `args:`, `kwargs:key=value` and `result:`. Plain terms match any field.
//! Substring terms are case-insensitive and need at least three characters;
//! `state:` and `kwargs:` match exactly.

use serde_json::Value;

/// The shortest substring term.
pub const MIN_TERM: usize = 3;

/// Why a query was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid search query: {0}")]
pub struct SearchError(String);

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Any(String),
    Name(String),
    State(String),
    Worker(String),
    Args(String),
    Kwargs(String, String),
    Result(String),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Every part must match.
    And(Vec<Query>),
    /// One part must match.
    Or(Vec<Query>),
    /// A single condition.
    Term(TermBox),
}

/// A condition (opaque).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermBox(Term);

/// What a task offers to the search, lowercased where the match ignores case.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    /// Task id.
    pub uuid: String,
    /// Task name.
    pub name: String,
    /// State (`SUCCESS`).
    pub state: String,
    /// Worker id.
    pub worker: String,
    /// Positional arguments as JSON text.
    pub args: String,
    /// Keyword arguments.
    pub kwargs: Option<serde_json::Map<String, Value>>,
    /// Result or error as text.
    pub result: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Or,
    And,
    Word(String),
}

fn tokens(q: &str) -> Result<Vec<Token>, SearchError> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            _ => {
                let mut word = String::new();
                let mut quoted = false;
                while let Some(&c) = chars.peek() {
                    if c == '"' {
                        chars.next();
                        quoted = !quoted;
                        continue;
                    }
                    if !quoted && (c.is_whitespace() || c == '(' || c == ')') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                if quoted {
                    return Err(SearchError("a double quote is not closed".into()));
                }
                out.push(match word.as_str() {
                    "OR" => Token::Or,
                    "AND" => Token::And,
                    _ => Token::Word(word),
                });
            }
        }
    }
    Ok(out)
}

fn substring(what: &str, v: &str) -> Result<String, SearchError> {
    if v.chars().count() < MIN_TERM {
        return Err(SearchError(format!(
            "{what}{v:?} is shorter than {MIN_TERM} characters"
        )));
    }
    Ok(v.to_lowercase())
}

fn term(word: &str) -> Result<Term, SearchError> {
    let Some((q, v)) = word.split_once(':') else {
        return substring("", word).map(Term::Any);
    };
    match q {
        "name" => substring("name:", v).map(Term::Name),
        "worker" => substring("worker:", v).map(Term::Worker),
        "args" => substring("args:", v).map(Term::Args),
        "result" => substring("result:", v).map(Term::Result),
        "state" if !v.is_empty() => Ok(Term::State(v.to_uppercase())),
        "kwargs" => match v.split_once('=') {
            Some((k, val)) if !k.is_empty() => Ok(Term::Kwargs(k.to_string(), val.to_string())),
            _ => Err(SearchError(format!("kwargs:{v:?} is not key=value"))),
        },
        "state" => Err(SearchError("state: needs a state name".into())),
        // a colon in a plain term (a worker name, a URL) is part of the text
        _ => substring("", word).map(Term::Any),
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<Query, SearchError> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Query, SearchError> {
        let mut parts = vec![self.atom()?];
        loop {
            match self.peek() {
                Some(Token::And) => {
                    self.pos += 1;
                    parts.push(self.atom()?);
                }
                Some(Token::Word(_)) | Some(Token::Open) => parts.push(self.atom()?),
                _ => break,
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::And(parts)
        })
    }

    fn atom(&mut self) -> Result<Query, SearchError> {
        match self.tokens.get(self.pos).cloned() {
            Some(Token::Open) => {
                self.pos += 1;
                let q = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(SearchError("a parenthesis is not closed".into()));
                }
                self.pos += 1;
                Ok(q)
            }
            Some(Token::Word(w)) => {
                self.pos += 1;
                Ok(Query::Term(TermBox(term(&w)?)))
            }
            Some(Token::Close) => Err(SearchError("unexpected ')'".into())),
            Some(Token::Or) | Some(Token::And) => {
                Err(SearchError("OR and AND need a term on each side".into()))
            }
            None => Err(SearchError(
                "the query ends where a term is expected".into(),
            )),
        }
    }
}

/// Parses a query; `None` for an empty one (matches everything).
pub fn parse(q: &str) -> Result<Option<Query>, SearchError> {
    let tokens = tokens(q)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut p = Parser { tokens, pos: 0 };
    let query = p.or()?;
    if p.pos != p.tokens.len() {
        return Err(SearchError("unexpected ')'".into()));
    }
    Ok(Some(query))
}

fn has(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(needle)
}

fn kwarg_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Query {
    /// Whether a task matches.
    pub fn matches(&self, f: &Fields) -> bool {
        match self {
            Query::And(parts) => parts.iter().all(|p| p.matches(f)),
            Query::Or(parts) => parts.iter().any(|p| p.matches(f)),
            Query::Term(TermBox(t)) => match t {
                Term::Any(s) => [&f.uuid, &f.name, &f.worker, &f.args, &f.result, &f.state]
                    .iter()
                    .any(|h| has(h, s)),
                Term::Name(s) => has(&f.name, s),
                Term::Worker(s) => has(&f.worker, s),
                Term::Args(s) => has(&f.args, s),
                Term::Result(s) => has(&f.result, s),
                Term::State(s) => f.state == *s,
                Term::Kwargs(k, v) => f
                    .kwargs
                    .as_ref()
                    .and_then(|m| m.get(k))
                    .is_some_and(|x| kwarg_text(x) == *v),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str, state: &str, result: &str) -> Fields {
        Fields {
            uuid: "5f0c7a1e-0000".into(),
            name: name.into(),
            state: state.into(),
            worker: "celery@host1".into(),
            result: result.into(),
            kwargs: serde_json::from_str(r#"{"queue":"priority","n":3}"#).ok(),
            ..Fields::default()
        }
    }

    fn q(s: &str) -> Query {
        parse(s).unwrap().unwrap()
    }

    #[test]
    fn terms_qualifiers_and_boolean_structure() {
        let t = task("send_email", "FAILURE", "connection refused by host");
        assert!(q("email").matches(&t));
        assert!(q("EMAIL send").matches(&t));
        assert!(q("email AND refused").matches(&t));
        assert!(!q("email AND invoice").matches(&t));
        assert!(q("invoice OR email").matches(&t));
        assert!(q("(invoice OR report) OR email").matches(&t));
        assert!(!q("(invoice OR report) email").matches(&t));
        assert!(q("result:\"connection refused\"").matches(&t));
        assert!(!q("result:\"connection accepted\"").matches(&t));
        assert!(q("state:failure").matches(&t));
        assert!(q("(state:FAILURE OR state:RETRY)").matches(&t));
        assert!(!q("state:SUCCESS").matches(&t));
        assert!(q("worker:celery@host").matches(&t));
        assert!(q("kwargs:queue=priority").matches(&t));
        assert!(q("kwargs:n=3").matches(&t));
        assert!(!q("kwargs:queue=prio").matches(&t));
        assert!(q("5f0c7a1e").matches(&t));
        assert!(q("name:send_").matches(&t));
    }

    #[test]
    fn bad_queries_are_named() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   ").unwrap(), None);
        for bad in [
            "ab", "(email", "email)", "OR email", "email OR", "\"open", "kwargs:x", "state:",
            "name:ab",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid search query"),
                "{bad}: {e}"
            );
        }
    }
}
