//! Table names, normalised so that the POS's "Table 7A" and the diary's "7a" are one table.

use std::fmt;

/// A table's name in canonical form: upper case, without a "Table"/"T" prefix or spaces.
///
/// "7a", "7A", "Table 7A", "table 7a" and "T7A" all become "7A". Names that are not of that
/// shape ("Bar", "Terrace 2") keep their words, upper-cased and single-spaced.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableKey(String);

impl serde::Serialize for TableKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl TableKey {
    /// Normalises a table name; `None` for a blank one.
    pub fn parse(raw: &str) -> Option<TableKey> {
        let upper = raw
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase();
        if upper.is_empty() {
            return None;
        }
        let rest = upper
            .strip_prefix("TABLE")
            .map(str::trim_start)
            .filter(|rest| !rest.is_empty())
            .or_else(|| {
                upper
                    .strip_prefix('T')
                    .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .unwrap_or(&upper);
        Some(TableKey(rest.replace(' ', "")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a key that was normalised before (read back from storage).
    pub fn from_normalised(key: String) -> TableKey {
        TableKey(key)
    }
}

impl fmt::Display for TableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> String {
        TableKey::parse(raw).map(|k| k.0).unwrap_or_default()
    }

    #[test]
    fn spellings_of_the_same_table_are_one_key() {
        for raw in ["7a", "7A", "Table 7A", "table 7a", "T7A", " TABLE  7a "] {
            assert_eq!(key(raw), "7A", "{raw:?}");
        }
    }

    #[test]
    fn words_that_merely_start_with_t_are_kept() {
        assert_eq!(key("Terrace 2"), "TERRACE2");
        assert_eq!(key("Bar"), "BAR");
        assert_eq!(key("Table"), "TABLE");
    }

    #[test]
    fn blank_names_are_no_table() {
        assert_eq!(TableKey::parse("  "), None);
    }
}
