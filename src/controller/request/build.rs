//! Step 3 of the pipeline (pure): a validated request's files and their digest. No
//! second check: the validation is its input.

use std::collections::BTreeMap;

use super::validate::ValidatedRequest;
use crate::{gitops::RepoPath, render};

/// An environment ready to commit.
#[derive(Debug)]
pub struct Built {
    pub environment: render::Environment,
    pub folder: RepoPath,
    /// SHA-256 over the files (names and contents): recognises a rendering already committed.
    pub digest: [u8; 32],
}

impl Built {
    /// The digest in hex, as status records it.
    pub fn digest_hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

pub fn build(validated: &ValidatedRequest<'_>, options: &render::RenderOptions) -> Result<Built, render::RenderError> {
    let environment = render::build(&validated.environment, options)?;
    let digest = files_digest(&environment.files);
    Ok(Built { environment, folder: validated.folder.clone(), digest })
}

/// SHA-256 over the rendered files (names and contents), length-prefixed so that no
/// two different sets of files hash alike.
fn files_digest(files: &BTreeMap<String, String>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (name, yaml) in files {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((yaml.len() as u64).to_le_bytes());
        hasher.update(yaml.as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_changes_with_any_name_or_content_and_not_with_nothing() {
        let files = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(n, y)| ((*n).to_owned(), (*y).to_owned())).collect()
        };
        let base = files_digest(&files(&[("a.yaml", "x: 1"), ("b.yaml", "y: 2")]));
        assert_eq!(base, files_digest(&files(&[("b.yaml", "y: 2"), ("a.yaml", "x: 1")])));
        assert_ne!(base, files_digest(&files(&[("a.yaml", "x: 2"), ("b.yaml", "y: 2")])));
        assert_ne!(base, files_digest(&files(&[("a.yml", "x: 1"), ("b.yaml", "y: 2")])));
        // Length prefixes: moving bytes between name and content changes the digest.
        assert_ne!(files_digest(&files(&[("ab", "c")])), files_digest(&files(&[("a", "bc")])));
    }
}
