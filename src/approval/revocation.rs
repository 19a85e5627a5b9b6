//! Revoked approvals: the token ids (`jti`) the [`Verifier`](super::Verifier) refuses
//! although their signature, target and time still hold.
//!
//! The list is a folder whose file names are the revoked ids (dotfiles skipped): a
//! ConfigMap mounted into Berth's pod, one key per revoked token, its value a note for
//! people (who revoked it, why). Revoking is a write to that ConfigMap, so RBAC decides
//! who may revoke and the apiserver's audit log records who did:
//!
//! ```text
//! kubectl -n berth-system patch configmap berth-approval-revocations --type merge \
//!   -p '{"data":{"<token id>":"revoked by bob: approved the wrong revision"}}'
//! ```
//!
//! A plain file (one id per line, `#` starts a comment) is read too, for Berth run
//! outside a cluster. Berth re-reads either when it changes ([`crate::reload`]); a
//! kubelet takes up to a minute or so to update a mounted ConfigMap.

use std::{collections::HashSet, path::Path};

/// The longest token id read: Berth's are 22 characters; anything far longer is not one.
const MAX_ID_LEN: usize = 128;

/// Token ids revoked before they expire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    ids: HashSet<String>,
}

impl Revocations {
    /// Whether `token_id` is revoked.
    pub fn contains(&self, token_id: &str) -> bool {
        self.ids.contains(token_id)
    }

    /// How many ids are revoked.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids a list file holds: one per line, blank lines and `#` comments skipped,
    /// and lines that cannot be a token id skipped with a warning (one typo must not
    /// undo every other revocation).
    pub fn parse(text: &str) -> Self {
        let mut ids = HashSet::new();
        for (number, line) in text.lines().enumerate() {
            let id = line.split('#').next().unwrap_or_default().trim();
            if id.is_empty() {
                continue;
            }
            match check_id(id) {
                Ok(()) => drop(ids.insert(id.to_owned())),
                Err(why) => tracing::warn!(line = number + 1, why, "approval revocations: a line skipped"),
            }
        }
        Revocations { ids }
    }

    /// The revocations at `path`: a folder whose file names are the ids (a mounted
    /// ConfigMap), or a list file ([`Revocations::parse`]). A path that does not exist
    /// revokes nothing (an optional ConfigMap not created yet).
    pub fn read(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        if !path.exists() {
            return Ok(Revocations::default());
        }
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| format!("cannot list {shown}: {e}"))?;
            let mut ids = HashSet::new();
            for entry in entries {
                let entry = entry.map_err(|e| format!("cannot list {shown}: {e}"))?;
                let name = entry.file_name();
                let Some(name) = name.to_str().filter(|n| !n.starts_with('.')) else {
                    continue; // the volume's ..data bookkeeping, or not a name a token id has
                };
                match check_id(name) {
                    Ok(()) => drop(ids.insert(name.to_owned())),
                    // A ConfigMap key may hold `.`, which no token id does: skipped, so
                    // one odd key neither stops Berth nor freezes the list.
                    Err(why) => tracing::warn!(key = name, why, "approval revocations: a key skipped"),
                }
            }
            return Ok(Revocations { ids });
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        Ok(Self::parse(&text))
    }
}

/// A token id is base64url (what Berth issues), and short.
fn check_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_ID_LEN {
        return Err(format!("a token id has at most {MAX_ID_LEN} characters"));
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("a token id holds only letters, digits, - and _ (as `berth approve` prints it)".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_file_names_one_id_per_line_with_comments_and_blanks_skipped() {
        let list = Revocations::parse("# leaked in a chat\nAbC-12_x\n\n  zzz  # wrong revision\n");
        assert!(list.contains("AbC-12_x") && list.contains("zzz"));
        assert!(!list.contains("leaked"));
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn what_cannot_be_a_token_id_is_skipped_and_the_rest_still_revokes() {
        let list = Revocations::parse(&format!("good\nnot an id\n{}\nalso-good\n", "a".repeat(MAX_ID_LEN + 1)));
        assert!(list.contains("good") && list.contains("also-good"));
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn a_mounted_config_map_revokes_its_keys_and_a_missing_one_nothing() {
        let dir = tempfile::tempdir().expect("a folder");
        std::fs::write(dir.path().join("tok1"), "revoked by bob: wrong revision").expect("written");
        std::fs::create_dir(dir.path().join("..2026_12_02")).expect("bookkeeping");
        std::fs::write(dir.path().join("..data"), "").expect("bookkeeping");
        let revoked = Revocations::read(dir.path()).expect("read");
        assert!(revoked.contains("tok1"));
        assert_eq!(revoked.len(), 1, "dotfiles are the volume's, not ids");
        let missing = Revocations::read(&dir.path().join("absent")).expect("nothing revoked");
        assert!(missing.is_empty());
        std::fs::write(dir.path().join("note.txt"), "a key no token id has").expect("written");
        let revoked = Revocations::read(dir.path()).expect("read");
        assert!(revoked.contains("tok1") && !revoked.contains("note.txt"), "{revoked:?}");
    }
}
