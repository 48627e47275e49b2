//! What the monitor serves and to whom: address, port, URL prefix, credentials,
//! read-only mode. Every value is checked when it is set, and every error names the
//! setting (never the secret it held).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The port Flower listens on, and so the monitor.
pub const DEFAULT_PORT: u16 = 5555;

/// Why a setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A `--basic-auth` entry is not `user:password` with both parts non-empty.
    #[error(
        "basic auth entry {position} is not user:password with a non-empty user and password \
         (entries are separated by commas)"
    )]
    BasicAuthEntry {
        /// 1-based position of the entry in the list.
        position: usize,
    },
    /// A bearer token is too short to be a secret.
    #[error("bearer token {position} has {len} characters: a token needs at least {MIN_TOKEN_LEN}")]
    ShortToken {
        /// 1-based position of the token.
        position: usize,
        /// Its length.
        len: usize,
    },
    /// Only one of `FLOWER_USER` and `FLOWER_PASSWORD` is set.
    #[error("FLOWER_USER and FLOWER_PASSWORD go together: set both or neither")]
    HalfUserPassword,
    /// The URL prefix holds characters a path segment may not.
    #[error(
        "url prefix {0:?}: use path segments of letters, digits, '-', '_', '.' and '~' \
         separated by '/' (such as \"flower\" or \"/ops/flower\")"
    )]
    UrlPrefix(String),
    /// Metrics tokens without any other credential.
    #[error(
        "a metrics token only narrows access: set --basic-auth or a bearer token too \
         (without credentials the monitor is open, on the loopback only)"
    )]
    MetricsTokenAlone,
    /// No credentials and an address other than the loopback.
    #[error(
        "refusing to serve {0} without authentication: set --basic-auth user:password (or \
         FLOWER_BASIC_AUTH) or a bearer token, or serve 127.0.0.1"
    )]
    OpenNonLoopback(IpAddr),
}

/// The shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// One `user:password` pair.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredential {
    /// User name.
    pub user: String,
    password: String,
}

impl BasicCredential {
    /// The password, for comparison.
    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for BasicCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredential")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A bearer token (shown redacted).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Reads `user:pass[,user:pass…]` (Flower's `--basic-auth`, `FLOWER_BASIC_AUTH`). A
/// password may contain ':'; the user may not.
pub fn parse_basic_auth(list: &str) -> Result<Vec<BasicCredential>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .enumerate()
        .filter(|(_, e)| !e.is_empty())
        .map(|(i, entry)| match entry.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                Ok(BasicCredential {
                    user: user.to_string(),
                    password: password.to_string(),
                })
            }
            _ => Err(ConfigError::BasicAuthEntry { position: i + 1 }),
        })
        .collect()
}

/// Normalises a URL prefix to `""` or `"/a/b"` (no trailing slash).
pub fn normalize_prefix(prefix: &str) -> Result<String, ConfigError> {
    let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    let valid = |s: &&str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
            && *s != "."
            && *s != ".."
    };
    if !segments.iter().all(valid) {
        return Err(ConfigError::UrlPrefix(prefix.to_string()));
    }
    Ok(segments.iter().map(|s| format!("/{s}")).collect())
}

/// The monitor's settings. Build with [`MonitorConfig::new`] and the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MonitorConfig {
    address: Option<IpAddr>,
    port: u16,
    url_prefix: String,
    read_only: bool,
    basic: Vec<BasicCredential>,
    tokens: Vec<Token>,
    metrics_tokens: Vec<Token>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl MonitorConfig {
    /// No credentials, port [`DEFAULT_PORT`], no URL prefix, mutating routes allowed.
    pub fn new() -> Self {
        MonitorConfig {
            // chosen by `bind_address`: the loopback without credentials, every
            // interface with them
            address: None,
            port: DEFAULT_PORT,
            // served at the root
            url_prefix: String::new(),
            // operators may act (revoke, retry, control) unless told otherwise
            read_only: false,
            basic: Vec::new(),
            tokens: Vec::new(),
            metrics_tokens: Vec::new(),
        }
    }

    /// The address to listen on.
    ///
    /// # Default
    /// `127.0.0.1` without credentials, `0.0.0.0` with them.
    pub fn address(mut self, address: IpAddr) -> Self {
        self.address = Some(address);
        self
    }

    /// The port.
    ///
    /// # Default
    /// [`DEFAULT_PORT`] (5555).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Serve under a path prefix (behind a reverse proxy): `"flower"` serves
    /// `/flower/api/workers`.
    ///
    /// # Default
    /// None: served at the root.
    pub fn url_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        self.url_prefix = normalize_prefix(prefix)?;
        Ok(self)
    }

    /// Refuse every mutating route with 403.
    ///
    /// # Default
    /// Off.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// Adds `user:pass[,…]` credentials (see [`parse_basic_auth`]).
    pub fn basic_auth(mut self, list: &str) -> Result<Self, ConfigError> {
        self.basic.extend(parse_basic_auth(list)?);
        Ok(self)
    }

    /// Adds the guide's `FLOWER_USER` / `FLOWER_PASSWORD` pair.
    pub fn user_password(
        mut self,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<Self, ConfigError> {
        match (
            user.filter(|u| !u.is_empty()),
            password.filter(|p| !p.is_empty()),
        ) {
            (None, None) => Ok(self),
            (Some(user), Some(password)) => {
                if user.contains(':') {
                    return Err(ConfigError::BasicAuthEntry { position: 1 });
                }
                self.basic.push(BasicCredential {
                    user: user.to_string(),
                    password: password.to_string(),
                });
                Ok(self)
            }
            _ => Err(ConfigError::HalfUserPassword),
        }
    }

    /// Adds bearer tokens (`Authorization: Bearer <token>`), each at least
    /// [`MIN_TOKEN_LEN`] characters.
    pub fn bearer_tokens<I, S>(mut self, tokens: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for (i, t) in tokens.into_iter().enumerate() {
            let t = t.as_ref().trim();
            if t.is_empty() {
                continue;
            }
            if t.len() < MIN_TOKEN_LEN {
                return Err(ConfigError::ShortToken {
                    position: i + 1,
                    len: t.len(),
                });
            }
            self.tokens.push(Token(t.to_string()));
        }
        Ok(self)
    }

    /// Adds bearer tokens that open `/metrics` only (for a Prometheus server), each at
    /// least [`MIN_TOKEN_LEN`] characters.
    pub fn metrics_tokens<I, S>(mut self, tokens: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let all = MonitorConfig::new().bearer_tokens(tokens)?;
        self.metrics_tokens.extend(all.tokens);
        Ok(self)
    }

    pub(crate) fn metrics_only_tokens(&self) -> &[Token] {
        &self.metrics_tokens
    }

    /// Whether any credential is configured.
    pub fn has_auth(&self) -> bool {
        !self.basic.is_empty() || !self.tokens.is_empty()
    }

    /// The URL prefix, `""` or `"/a/b"`.
    pub fn prefix(&self) -> &str {
        &self.url_prefix
    }

    /// Whether mutating routes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn basic(&self) -> &[BasicCredential] {
        &self.basic
    }

    pub(crate) fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The socket address to listen on: without credentials only a loopback address
    /// is allowed (127.0.0.1 unless another loopback address is given).
    pub fn bind_address(&self) -> Result<SocketAddr, ConfigError> {
        if !self.has_auth() && !self.metrics_tokens.is_empty() {
            return Err(ConfigError::MetricsTokenAlone);
        }
        let ip = match (self.address, self.has_auth()) {
            (Some(ip), true) => ip,
            (None, true) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (Some(ip), false) if ip.is_loopback() => ip,
            (Some(ip), false) => return Err(ConfigError::OpenNonLoopback(ip)),
            (None, false) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        Ok(SocketAddr::new(ip, self.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_lists_are_read_and_bad_entries_named_without_secrets() {
        let c = parse_basic_auth("ann:s3cret, bob:pa:ss").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!((c[1].user.as_str(), c[1].password()), ("bob", "pa:ss"));
        let e = parse_basic_auth("ann:s3cret,bobhunter2").unwrap_err();
        assert_eq!(e, ConfigError::BasicAuthEntry { position: 2 });
        assert!(!e.to_string().contains("hunter2"));
        assert!(parse_basic_auth(":x").is_err());
        assert!(parse_basic_auth("x:").is_err());
        assert!(!format!("{:?}", c[0]).contains("s3cret"));
    }

    #[test]
    fn prefixes_are_normalised_and_checked() {
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("/").unwrap(), "");
        assert_eq!(normalize_prefix("flower").unwrap(), "/flower");
        assert_eq!(normalize_prefix("/ops/flower/").unwrap(), "/ops/flower");
        assert!(normalize_prefix("a b").is_err());
        assert!(normalize_prefix("/../x").is_err());
        assert!(normalize_prefix("x?y").is_err());
    }

    #[test]
    fn without_credentials_only_the_loopback_is_served() {
        let open = MonitorConfig::new();
        assert_eq!(open.bind_address().unwrap().to_string(), "127.0.0.1:5555");
        let public: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(
            open.clone().address(public).bind_address(),
            Err(ConfigError::OpenNonLoopback(public))
        );
        let v6: IpAddr = "::1".parse().unwrap();
        assert!(open.address(v6).bind_address().is_ok());
        let closed = MonitorConfig::new().basic_auth("a:b").unwrap();
        assert_eq!(closed.bind_address().unwrap().to_string(), "0.0.0.0:5555");
    }

    #[test]
    fn user_and_password_go_together_and_tokens_must_be_long() {
        assert_eq!(
            MonitorConfig::new()
                .user_password(Some("u"), None)
                .unwrap_err(),
            ConfigError::HalfUserPassword
        );
        assert!(
            MonitorConfig::new()
                .user_password(Some("u"), Some("p"))
                .unwrap()
                .has_auth()
        );
        assert!(
            !MonitorConfig::new()
                .user_password(None, Some(""))
                .unwrap()
                .has_auth()
        );
        let e = MonitorConfig::new().bearer_tokens(["short"]).unwrap_err();
        assert_eq!(
            e,
            ConfigError::ShortToken {
                position: 1,
                len: 5
            }
        );
        assert!(
            MonitorConfig::new()
                .bearer_tokens(["0123456789abcdef"])
                .unwrap()
                .has_auth()
        );
    }
}
