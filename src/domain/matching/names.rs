//! Whether the guest named on a check is the guest a booking is under, as a host compares
//! them: by family name, whatever the case, accents or order ("Purple, John" and "john
//! PURPLE"; "Müller" and "MULLER"; "Strauß" and "STRAUSS").
//!
//! Names are compared after Unicode compatibility decomposition with combining marks
//! dropped (unicode-normalization) and full Unicode case folding (caseless), never by a
//! hand-made table of letters.

use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;

/// What two names say about being the same guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameEvidence {
    /// Their family names are the same.
    Agrees,
    /// Both have a family name, and they differ.
    Disagrees,
    /// One of them has no name to compare.
    Silent,
}

/// A name's words, decomposed, without marks, case-folded.
fn words(name: &str) -> Vec<String> {
    let plain: String = name.nfkd().filter(|c| !is_combining_mark(*c)).collect();
    caseless::default_case_fold_str(&plain)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The family name of a name as written: the last word, or the first where a comma puts
/// it first ("Purple, John").
fn family_name(name: &str) -> Option<String> {
    if let Some((family, given)) = name.split_once(',')
        && !given.trim().is_empty()
    {
        return words(family).into_iter().last();
    }
    words(name).into_iter().last()
}

/// Compares the guest named on a check with the guest a booking is under.
pub fn compare(check: Option<&str>, booking: Option<&str>) -> NameEvidence {
    match (check.and_then(family_name), booking.and_then(family_name)) {
        (Some(a), Some(b)) if a == b => NameEvidence::Agrees,
        (Some(_), Some(_)) => NameEvidence::Disagrees,
        _ => NameEvidence::Silent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_agree_across_case_accents_order_and_folding() {
        for (check, booking) in [
            ("John Purple", "john PURPLE"),
            ("Purple, John", "John Purple"),
            ("Anna Müller", "ANNA MULLER"),
            ("Thomas Müller", "Anna Müller"),
            ("Strauß", "Johann STRAUSS"),
            ("Zoë van Dijk", "Z. Van DIJK"),
            ("Ｊｏｈｎ Ｐｕｒｐｌｅ", "John Purple"),
        ] {
            assert_eq!(
                compare(Some(check), Some(booking)),
                NameEvidence::Agrees,
                "{check} / {booking}"
            );
        }
    }

    #[test]
    fn different_family_names_disagree_and_a_missing_one_says_nothing() {
        assert_eq!(
            compare(Some("John Purple"), Some("John Smith")),
            NameEvidence::Disagrees
        );
        assert_eq!(compare(None, Some("John Smith")), NameEvidence::Silent);
        assert_eq!(
            compare(Some("  "), Some("John Smith")),
            NameEvidence::Silent
        );
        assert_eq!(compare(Some("Smith"), None), NameEvidence::Silent);
    }
}
