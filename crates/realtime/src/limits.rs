//! Connection limits: per replica (checked before the WebSocket upgrade) and
//! per user (checked once `connection_init` names the user). Each admitted
//! connection holds a permit that gives its place back when dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug)]
pub(crate) struct Limits {
    max: usize,
    per_user: usize,
    open: AtomicUsize,
    users: Mutex<HashMap<String, usize>>,
}

impl Limits {
    pub(crate) fn new(max: usize, per_user: usize) -> Arc<Limits> {
        Arc::new(Limits {
            max,
            per_user,
            open: AtomicUsize::new(0),
            users: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One open connection of this replica.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: Arc<Limits>,
}

/// One open connection of a user on this replica.
#[derive(Debug)]
pub struct UserPermit {
    limits: Arc<Limits>,
    user_id: String,
}

pub(crate) fn try_connection(limits: &Arc<Limits>) -> Option<ConnectionPermit> {
    let admitted = limits
        .open
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limits.max).then_some(n + 1)
        })
        .is_ok();
    admitted.then(|| ConnectionPermit { limits: limits.clone() })
}

/// A place among the user's connections, or `None` when they hold
/// `max_connections_per_user` already.
pub(crate) fn try_user(limits: &Arc<Limits>, user_id: &str) -> Option<UserPermit> {
    let mut users = limits.users.lock().unwrap_or_else(PoisonError::into_inner);
    let n = users.entry(user_id.to_owned()).or_insert(0);
    if *n >= limits.per_user {
        return None;
    }
    *n += 1;
    Some(UserPermit {
        limits: limits.clone(),
        user_id: user_id.to_owned(),
    })
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for UserPermit {
    fn drop(&mut self) {
        let mut users = self.limits.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = users.get_mut(&self.user_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                users.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_and_give_back() {
        let limits = Limits::new(2, 1);
        let a = try_connection(&limits).unwrap();
        let b = try_connection(&limits).unwrap();
        assert!(try_connection(&limits).is_none());
        let ua = try_user(&limits, "u").unwrap();
        assert!(try_user(&limits, "u").is_none());
        let vb = try_user(&limits, "v").unwrap();
        drop(ua);
        assert!(try_user(&limits, "u").is_some());
        drop(vb);
        drop(a);
        drop(b);
        assert_eq!(limits.open_connections(), 0);
        assert!(try_connection(&limits).is_some());
    }
}
