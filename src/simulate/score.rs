//! How right a diary came out against a day's truth.

use std::collections::BTreeMap;
use std::fmt;

/// Counts over one or more simulated days, and the ratios a host cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Score {
    pub days: usize,
    /// Notifications sent, duplicates and retries included.
    pub deliveries: usize,
    /// Deliveries not answered 200.
    pub rejected: usize,
    /// Checks (sales) the diary holds.
    pub checks: usize,
    /// Checks that belong to a reservation.
    pub should_match: usize,
    /// Checks on the reservation they belong to.
    pub right: usize,
    /// Checks on a reservation they do not belong to (a walk-in's check on a reservation
    /// included): what precision counts against.
    pub wrong: usize,
    /// Checks of a reservation left unmatched or on a walk-in.
    pub missed: usize,
    /// Checks left unmatched because candidates tied.
    pub ambiguous: usize,
    /// Reservations whose final status contradicts what happened (a party that came and
    /// paid not `paid`/`completed`, a no-show not `no_show`, a booking without a sale
    /// `seated`, ...).
    pub diary_errors: usize,
    /// Each wrong or missed check and each diary error, in words (the first few hundred).
    pub mistakes: Vec<String>,
    /// Right matches by the rule that made them (`booking_reference`, `lineage`,
    /// `table_time`).
    pub right_by_rule: BTreeMap<String, usize>,
    /// How often each situation was generated.
    pub situations: BTreeMap<String, usize>,
}

const MAX_MISTAKES: usize = 300;

impl Score {
    /// Matches that are right, over all matches to a reservation; 1.0 when none was made.
    pub fn precision(&self) -> f64 {
        ratio(self.right, self.right + self.wrong)
    }

    /// Checks of a reservation that landed on it, over all such checks; 1.0 when none.
    pub fn recall(&self) -> f64 {
        ratio(self.right, self.should_match)
    }

    /// Checks left ambiguous, over all checks.
    pub fn ambiguity_rate(&self) -> f64 {
        if self.checks == 0 {
            0.0
        } else {
            self.ambiguous as f64 / self.checks as f64
        }
    }

    pub(super) fn mistake(&mut self, what: String) {
        if self.mistakes.len() < MAX_MISTAKES {
            self.mistakes.push(what);
        }
    }

    /// Adds another run's counts to these.
    pub fn add(&mut self, other: Score) {
        self.days += other.days;
        self.deliveries += other.deliveries;
        self.rejected += other.rejected;
        self.checks += other.checks;
        self.should_match += other.should_match;
        self.right += other.right;
        self.wrong += other.wrong;
        self.missed += other.missed;
        self.ambiguous += other.ambiguous;
        self.diary_errors += other.diary_errors;
        for mistake in other.mistakes {
            self.mistake(mistake);
        }
        for (rule, n) in other.right_by_rule {
            *self.right_by_rule.entry(rule).or_default() += n;
        }
        for (situation, n) in other.situations {
            *self.situations.entry(situation).or_default() += n;
        }
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} day(s), {} deliveries ({} not answered 200), {} checks",
            self.days, self.deliveries, self.rejected, self.checks
        )?;
        writeln!(
            f,
            "precision {:.4} ({} right, {} wrong)   recall {:.4} ({} of {}; {} missed)   ambiguity {:.4} ({})   diary errors {}",
            self.precision(),
            self.right,
            self.wrong,
            self.recall(),
            self.right,
            self.should_match,
            self.missed,
            self.ambiguity_rate(),
            self.ambiguous,
            self.diary_errors
        )?;
        let rules: Vec<String> = self
            .right_by_rule
            .iter()
            .map(|(rule, n)| format!("{rule} {n}"))
            .collect();
        writeln!(f, "right by rule: {}", rules.join(", "))?;
        let situations: Vec<String> = self
            .situations
            .iter()
            .map(|(situation, n)| format!("{situation} {n}"))
            .collect();
        write!(f, "situations: {}", situations.join(", "))
    }
}
