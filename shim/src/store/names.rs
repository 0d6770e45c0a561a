//! Name reservation: a pod or container name (built from its CRI metadata) belongs to one
//! object at a time, so a retried or duplicated create cannot make two of them.
//!
//! The reservation is taken before any work starts and released when the object is removed
//! or its creation failed, as containerd's name index does.

use std::collections::HashMap;
use std::sync::Mutex;

/// Names in use, each with the id of its holder.
#[derive(Default)]
pub struct Names {
    held: Mutex<HashMap<String, String>>,
}

impl Names {
    /// Reserves `name` for `id`; on conflict returns the current holder's id.
    pub fn reserve(&self, name: &str, id: &str) -> Result<(), String> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.get(name) {
            Some(holder) if holder != id => Err(holder.clone()),
            _ => {
                held.insert(name.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    /// Releases `name` if `id` holds it.
    pub fn release(&self, name: &str, id: &str) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.get(name).is_some_and(|holder| holder == id) {
            held.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_name() {
        let names = Names::default();
        names.reserve("web_default_uid_0", "a").unwrap();
        names.reserve("web_default_uid_0", "a").unwrap();
        assert_eq!(names.reserve("web_default_uid_0", "b").unwrap_err(), "a");
        names.release("web_default_uid_0", "b");
        assert!(names.reserve("web_default_uid_0", "b").is_err(), "only the holder releases");
        names.release("web_default_uid_0", "a");
        names.reserve("web_default_uid_0", "b").unwrap();
    }
}
