//! The CRI's list filters, shared by every List RPC: all given fields must match (AND),
//! ids match by prefix (what `crictl ps --id abc` sends), labels by exact key and value.

use std::collections::HashMap;

/// Does `id` match the filter's id (empty = any; else a prefix, as ids are shown truncated)?
pub fn id_matches(filter_id: &str, id: &str) -> bool {
    filter_id.is_empty() || id.starts_with(filter_id)
}

/// Does every `selector` pair appear in `labels`?
pub fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_by_prefix_and_labels_by_subset() {
        assert!(id_matches("", "abc"));
        assert!(id_matches("ab", "abc"));
        assert!(!id_matches("b", "abc"));
        let labels: HashMap<_, _> = [("app".to_string(), "web".to_string()), ("tier".into(), "1".into())].into();
        assert!(labels_match(&HashMap::new(), &labels));
        assert!(labels_match(&[("app".to_string(), "web".to_string())].into(), &labels));
        assert!(!labels_match(&[("app".to_string(), "db".to_string())].into(), &labels));
        assert!(!labels_match(&[("zone".to_string(), "a".to_string())].into(), &labels));
    }
}
