//! What a memory keeps of the memories folded into it, so that no task destroys what a
//! user said.
//!
//! - Deduplication deletes a duplicate only after recording it, whole (text, type,
//!   tags, times, metadata; not its vector), in the survivor's `metadata.history`.
//! - Compression keeps the first original text in `metadata.original_text`;
//!   [`restore_original`] undoes it.
//! - Consolidation and summarisation delete nothing: their members are archived
//!   (`is_archived`) with a link to the new memory.
//!
//! [`originals`] lists every memory recorded in a memory's history, recursively.
//!
//! ```
//! use hippo_memory_tasks::history::{originals, record_merged};
//! use hippo_memory_tasks::model::{Memory, MemoryType};
//! let mut survivor = Memory::new("u", "Loves hiking in the Alps", MemoryType::Preference);
//! let dup = Memory::new("u", "Enjoys mountain hikes in the Alps", MemoryType::Preference);
//! record_merged(&mut survivor, &dup);
//! assert_eq!(originals(&survivor)[0].text, "Enjoys mountain hikes in the Alps");
//! ```

use serde_json::{Value, json};

use crate::model::Memory;

/// Metadata key of the merged memories.
pub const HISTORY: &str = "history";
/// Metadata key of the text before compression.
pub const ORIGINAL_TEXT: &str = "original_text";

/// Records `merged` (without its vector) in `survivor`'s history.
pub fn record_merged(survivor: &mut Memory, merged: &Memory) {
    let mut bare = merged.clone();
    bare.embedding = None;
    let entry = json!({
        "reason": "merged",
        "at": chrono::Utc::now(),
        "memory": bare,
    });
    match survivor.metadata.get_mut(HISTORY) {
        Some(Value::Array(items)) => items.push(entry),
        _ => {
            survivor
                .metadata
                .insert(HISTORY.into(), Value::Array(vec![entry]));
        }
    }
}

/// The memories recorded directly in `m`'s history.
fn merged(m: &Memory) -> Vec<Memory> {
    match m.metadata.get(HISTORY) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.get("memory"))
            .filter_map(|v| serde_json::from_value::<Memory>(v.clone()).ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// Every memory recorded in `m`'s history, and in theirs, depth first.
pub fn originals(m: &Memory) -> Vec<Memory> {
    let mut out = Vec::new();
    for inner in merged(m) {
        let deeper = originals(&inner);
        out.push(inner);
        out.extend(deeper);
    }
    out
}

/// Every text `m` holds: its own, its text before compression, and those of its
/// history.
pub fn texts(m: &Memory) -> Vec<String> {
    let mut out = vec![m.text.clone()];
    if let Some(Value::String(t)) = m.metadata.get(ORIGINAL_TEXT) {
        out.push(t.clone());
    }
    for o in merged(m) {
        out.extend(texts(&o));
    }
    out
}

/// Keeps `m`'s current text as its original, unless an earlier one is kept.
pub fn keep_original(m: &mut Memory) {
    if !m.metadata.contains_key(ORIGINAL_TEXT) {
        m.metadata
            .insert(ORIGINAL_TEXT.into(), Value::String(m.text.clone()));
    }
}

/// Undoes compression: puts the original text back and forgets the compression;
/// returns whether there was one. The caller re-embeds and writes the memory.
///
/// ```
/// use hippo_memory_tasks::history::{keep_original, restore_original};
/// use hippo_memory_tasks::model::{Memory, MemoryType};
/// let mut m = Memory::new("u", "I don't like cilantro at all", MemoryType::Preference);
/// keep_original(&mut m);
/// m.text = "I don't like cilantro".into();
/// assert!(restore_original(&mut m));
/// assert_eq!(m.text, "I don't like cilantro at all");
/// assert!(!restore_original(&mut m));
/// ```
pub fn restore_original(m: &mut Memory) -> bool {
    match m.metadata.remove(ORIGINAL_TEXT) {
        Some(Value::String(t)) => {
            m.text = t;
            m.metadata.remove("compression_ratio");
            m.metadata.remove("original_token_count");
            m.embedding = None;
            m.embed_model = None;
            true
        }
        Some(other) => {
            m.metadata.insert(ORIGINAL_TEXT.into(), other);
            false
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MemoryType;

    #[test]
    fn history_nests_and_lists_every_text() {
        let mut a = Memory::new("u", "a", MemoryType::Fact);
        let mut b = Memory::new("u", "b", MemoryType::Fact);
        let c = Memory::new("u", "c", MemoryType::Fact);
        record_merged(&mut b, &c);
        keep_original(&mut b);
        b.text = "b short".into();
        b.embedding = Some(vec![1.0]);
        record_merged(&mut a, &b);
        let o = originals(&a);
        assert_eq!(
            o.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["b short", "c"]
        );
        assert!(o[0].embedding.is_none());
        assert_eq!(texts(&a), ["a", "b short", "b", "c"]);
    }
}
