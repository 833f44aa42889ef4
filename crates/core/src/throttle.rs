//! Login throttling: failed logins are counted per username and per source address in a
//! sliding window; once either count reaches its limit, further attempts are refused
//! before the password is checked, until old failures leave the window.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub max_failures_per_username: usize,
    pub max_failures_per_address: usize,
    pub window_ms: u64,
}

impl Default for ThrottlePolicy {
    /// Ten failures per account and nineteen per address in a minute: enough for a class of
    /// people mistyping, too few for guessing.
    fn default() -> Self {
        Self {
            max_failures_per_username: 10,
            max_failures_per_address: 19,
            window_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleScope {
    Username,
    Address,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub scope: ThrottleScope,
    pub retry_after_s: u64,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whom = match self.scope {
            ThrottleScope::Username => "this account",
            ThrottleScope::Address => "your network address",
        };
        write!(
            f,
            "too many failed logins for {whom}; wait {} seconds and try again, or ask an admin to reset your password",
            self.retry_after_s.max(1)
        )
    }
}

/// Keys are kept at most this many at once, oldest dropped first, so a flood of made-up
/// usernames cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    by_username: HashMap<String, VecDeque<u64>>,
    by_address: HashMap<String, VecDeque<u64>>,
}

impl LoginThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            ..Default::default()
        }
    }

    /// Called before checking a password. `Err` means: refuse without checking.
    pub fn check(&mut self, username: &str, address: &str, now_ms: u64) -> Result<(), Throttled> {
        let window = self.policy.window_ms;
        for (map, key, limit, scope) in [
            (
                &mut self.by_username,
                username,
                self.policy.max_failures_per_username,
                ThrottleScope::Username,
            ),
            (
                &mut self.by_address,
                address,
                self.policy.max_failures_per_address,
                ThrottleScope::Address,
            ),
        ] {
            if let Some(failures) = map.get_mut(key) {
                prune(failures, now_ms, window);
                if failures.len() >= limit {
                    let oldest = failures.front().copied().unwrap_or(now_ms);
                    let retry_after_ms = (oldest + window).saturating_sub(now_ms);
                    return Err(Throttled {
                        scope,
                        retry_after_s: retry_after_ms.div_ceil(1000),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn record_failure(&mut self, username: &str, address: &str, now_ms: u64) {
        let window = self.policy.window_ms;
        for (map, key) in [
            (&mut self.by_username, username),
            (&mut self.by_address, address),
        ] {
            if map.len() >= MAX_KEYS && !map.contains_key(key) {
                map.retain(|_, failures| {
                    prune(failures, now_ms, window);
                    !failures.is_empty()
                });
                if map.len() >= MAX_KEYS {
                    map.clear();
                }
            }
            let failures = map.entry(key.to_string()).or_default();
            prune(failures, now_ms, window);
            failures.push_back(now_ms);
        }
    }

    /// A successful login forgets the account's failures (not the address's).
    pub fn record_success(&mut self, username: &str) {
        self.by_username.remove(username);
    }
}

fn prune(failures: &mut VecDeque<u64>, now_ms: u64, window_ms: u64) {
    while failures.front().is_some_and(|&t| t + window_ms <= now_ms) {
        failures.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_failure_for_one_account_is_refused_before_checking() {
        let mut throttle = LoginThrottle::new(ThrottlePolicy::default());
        for i in 0..10 {
            assert!(throttle.check("anna", "10.0.0.1", i * 1000).is_ok());
            throttle.record_failure("anna", "10.0.0.1", i * 1000);
        }
        let refused = throttle.check("anna", "10.0.0.2", 10_000).unwrap_err();
        assert_eq!(refused.scope, ThrottleScope::Username);
        assert_eq!(refused.retry_after_s, 50);
    }

    #[test]
    fn many_accounts_from_one_address_hit_the_address_limit() {
        let mut throttle = LoginThrottle::new(ThrottlePolicy::default());
        for i in 0..19 {
            let user = format!("user{i}");
            assert!(throttle.check(&user, "10.0.0.1", 100).is_ok());
            throttle.record_failure(&user, "10.0.0.1", 100);
        }
        let refused = throttle.check("user19", "10.0.0.1", 200).unwrap_err();
        assert_eq!(refused.scope, ThrottleScope::Address);
        assert!(
            throttle.check("user19", "10.0.0.9", 200).is_ok(),
            "other addresses are not affected"
        );
    }

    #[test]
    fn failures_leave_the_window_after_a_minute() {
        let mut throttle = LoginThrottle::new(ThrottlePolicy::default());
        for _ in 0..10 {
            throttle.record_failure("anna", "a", 0);
        }
        assert!(throttle.check("anna", "a", 59_999).is_err());
        assert!(throttle.check("anna", "a", 60_000).is_ok());
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let mut throttle = LoginThrottle::new(ThrottlePolicy {
            max_failures_per_address: 3,
            ..Default::default()
        });
        for _ in 0..3 {
            throttle.record_failure("anna", "a", 0);
        }
        throttle.record_success("anna");
        assert_eq!(throttle.check("anna", "b", 1).map_err(|t| t.scope), Ok(()));
        assert_eq!(
            throttle.check("anna", "a", 1).map_err(|t| t.scope),
            Err(ThrottleScope::Address)
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_usernames() {
        let mut throttle = LoginThrottle::new(ThrottlePolicy::default());
        for i in 0..(MAX_KEYS + 10) {
            throttle.record_failure(&format!("u{i}"), "a", 0);
        }
        assert!(throttle.by_username.len() <= MAX_KEYS);
    }
}
