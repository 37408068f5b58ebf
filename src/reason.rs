//! Why something is unavailable: a sentence for people, and the error that caused it kept
//! whole.
//!
//! The domain errors (`StoreError`, `RequestError`, `ApprovalError`, …) say *what* failed in
//! their own variants; when the answer is "unavailable, retry later" the cause is another
//! layer's error (SQLite's, PostgreSQL's, the token's, the system's). A [`Reason`] keeps that
//! error as the variant's `source()`, so a caller can walk the chain or downcast to it, and
//! keeps a complete sentence for the log line that prints only the top error.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// The error underneath, shared: one failure can answer several callers (a group commit), and
/// the error types that carry a `Reason` stay `Clone`.
type Cause = Arc<dyn Error + Send + Sync + 'static>;

/// Why something is unavailable: a sentence, and the error that caused it when there is one.
///
/// Two reasons are equal when they read the same: a test compares what people are told, not
/// the identity of the error underneath.
#[derive(Clone)]
pub struct Reason {
    text: String,
    cause: Option<Cause>,
}

impl Reason {
    /// A reason with no error underneath (an invariant the code checks itself).
    pub fn new(text: impl Into<String>) -> Reason {
        Reason {
            text: text.into(),
            cause: None,
        }
    }

    /// The error itself is the reason: its text, and the error kept as the cause.
    pub fn caused_by(e: impl Error + Send + Sync + 'static) -> Reason {
        Reason {
            text: e.to_string(),
            cause: Some(Arc::new(e)),
        }
    }

    /// What was being done when `e` happened: "`context`: `e`", and `e` kept as the cause.
    pub fn context(context: impl fmt::Display, e: impl Error + Send + Sync + 'static) -> Reason {
        Reason {
            text: format!("{context}: {e}"),
            cause: Some(Arc::new(e)),
        }
    }

    /// The sentence.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The same cause with another sentence (a hint added for people).
    pub fn with_text(self, text: impl Into<String>) -> Reason {
        Reason {
            text: text.into(),
            cause: self.cause,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(c) => write!(f, "{:?} (caused by {c:?})", self.text),
            None => write!(f, "{:?}", self.text),
        }
    }
}

impl Error for Reason {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn Error + 'static))
    }
}

impl PartialEq for Reason {
    fn eq(&self, other: &Reason) -> bool {
        self.text == other.text
    }
}

impl Eq for Reason {}

impl From<String> for Reason {
    fn from(text: String) -> Reason {
        Reason::new(text)
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Reason {
        Reason::new(text)
    }
}

/// An error and its causes on one line, each said once: "a: b: c". A cause whose text the line
/// already ends with is not repeated, and the walk stops at a [`Reason`]: its sentence already
/// says what its cause says (made from it, or written to replace it with a hint).
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut at = e;
    while at.downcast_ref::<Reason>().is_none() {
        let Some(c) = at.source() else { break };
        let t = c.to_string();
        if !t.is_empty() && !out.ends_with(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        at = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("disk I/O error")]
    struct Disk;

    #[derive(Debug, thiserror::Error)]
    enum Top {
        #[error("store unavailable: {0}")]
        Unavailable(#[source] Reason),
    }

    #[test]
    fn the_cause_is_kept_and_can_be_found() {
        let e = Top::Unavailable(Reason::caused_by(Disk));
        let reason = e.source().expect("the reason");
        let cause = reason.source().expect("the cause");
        assert!(cause.downcast_ref::<Disk>().is_some());
        assert_eq!(e.to_string(), "store unavailable: disk I/O error");
    }

    #[test]
    fn the_chain_names_each_cause_once() {
        let e = Top::Unavailable(Reason::caused_by(Disk));
        assert_eq!(chain(&e), "store unavailable: disk I/O error");
        let e = Top::Unavailable(Reason::context("writing the CRL", Disk));
        assert_eq!(
            chain(&e),
            "store unavailable: writing the CRL: disk I/O error"
        );
        // A sentence that replaced its cause's text (a hint) stands for it.
        let e = Top::Unavailable(Reason::caused_by(Disk).with_text("disk I/O error: is it full?"));
        assert_eq!(chain(&e), "store unavailable: disk I/O error: is it full?");
        // Layers above a reason are each said once.
        let wrapped = std::io::Error::other(Top::Unavailable(Reason::caused_by(Disk)));
        assert_eq!(chain(&wrapped), "store unavailable: disk I/O error");
        let e = Top::Unavailable("no cause".into());
        assert!(e.source().and_then(|r| r.source()).is_none());
        assert_eq!(chain(&e), "store unavailable: no cause");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("writing the CRL")]
    struct Writing(#[source] Disk);

    #[test]
    fn a_chain_without_a_reason_is_walked_to_its_end() {
        assert_eq!(chain(&Writing(Disk)), "writing the CRL: disk I/O error");
    }

    #[test]
    fn the_sentence_and_the_debug_form_say_what_happened() {
        let r = Reason::caused_by(Disk);
        assert_eq!(r.text(), "disk I/O error");
        assert_eq!(r.clone().with_text("full").text(), "full");
        let debug = format!("{r:?}");
        assert!(
            debug.contains("disk I/O error") && debug.contains("Disk"),
            "{debug}"
        );
        assert_eq!(format!("{:?}", Reason::new("alone")), "\"alone\"");
    }

    #[test]
    fn reasons_compare_by_what_they_say() {
        assert_eq!(Reason::caused_by(Disk), Reason::new("disk I/O error"));
        assert_ne!(Reason::new("a"), Reason::new("b"));
        let hinted = Reason::caused_by(Disk).with_text("disk I/O error (is the disk full?)");
        assert!(hinted.source().is_some());
    }
}
