//! Subject names of the NATS bus, in one place so callers, workers and tests
//! agree on them.

/// Subject names under one prefix (`bus.subject_prefix`, so several gateways
/// can share one NATS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix: String = prefix.into();
        let prefix = prefix.trim_matches('.').to_owned();
        Self {
            prefix: if prefix.is_empty() {
                "switchyard".to_owned()
            } else {
                prefix
            },
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>.work.<provider>`: where callers publish a provider's work.
    pub fn work(&self, provider: &str) -> String {
        format!("{}.work.{}", self.prefix, token(provider))
    }

    /// `<prefix>.workers.<provider>`: the queue group all workers of a
    /// provider share, so each request reaches exactly one of them.
    pub fn queue_group(&self, provider: &str) -> String {
        format!("{}.workers.{}", self.prefix, token(provider))
    }

    /// `<prefix>.ctl.<worker_id>`: cancellations for one worker, used once
    /// the caller knows which worker accepted.
    pub fn ctl(&self, worker_id: &str) -> String {
        format!("{}.ctl.{}", self.prefix, token(worker_id))
    }

    /// `<prefix>.cancel.<provider>`: cancellations every worker of the
    /// provider hears, for a call dropped before any worker accepted it.
    pub fn cancel(&self, provider: &str) -> String {
        format!("{}.cancel.{}", self.prefix, token(provider))
    }
}

/// Makes a name one subject token. A `.` would split it, and `*`, `>` or
/// whitespace would turn a subscription into a wildcard or an invalid
/// subject; callers and workers map names the same way, so they still meet.
fn token(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_documented_layout() {
        let s = Subjects::new("switchyard");
        assert_eq!(s.work("openai"), "switchyard.work.openai");
        assert_eq!(s.queue_group("openai"), "switchyard.workers.openai");
        assert_eq!(s.ctl("w-1"), "switchyard.ctl.w-1");
        assert_eq!(s.cancel("openai"), "switchyard.cancel.openai");
    }

    #[test]
    fn prefix_may_have_several_tokens() {
        let s = Subjects::new("acme.gw.");
        assert_eq!(s.prefix(), "acme.gw");
        assert_eq!(s.work("anthropic"), "acme.gw.work.anthropic");
        assert_eq!(Subjects::new("").prefix(), "switchyard");
    }

    #[test]
    fn names_become_single_tokens() {
        let s = Subjects::new("sy");
        assert_eq!(s.work("a.b"), "sy.work.a_b");
        assert_eq!(s.ctl("host.example:42 *>"), "sy.ctl.host_example_42___");
        assert_eq!(s.work(""), "sy.work._");
    }
}
