//! Where things live in the GitOps repository, as pure functions.
//!
//! One folder per environment, app-of-apps friendly:
//! `clusters/<cluster>/tenants/<tenant>/<request>/<file>.yaml`.
//!
//! Every segment is validated here, before it reaches git, because a segment is
//! user-controlled (cluster, tenant and request names come from Kubernetes objects)
//! and a crafted name such as `..` or `.git` must never let one tenant write into
//! another tenant's folder or into git's own metadata.

use std::fmt;

/// Longest segment accepted (a Kubernetes DNS subdomain name is at most 253 characters).
const MAX_SEGMENT_LEN: usize = 253;
/// Longest file name accepted (common file-system limit).
const MAX_FILE_NAME_LEN: usize = 255;

/// Why a path segment or file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The segment is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which part of the path (cluster, tenant, request, segment, file name).
        what: &'static str,
    },
    /// The segment is longer than allowed.
    #[error("{what} {value:?} is longer than {max} characters")]
    TooLong {
        /// Which part of the path.
        what: &'static str,
        /// The offending value.
        value: String,
        /// The limit.
        max: usize,
    },
    /// The segment contains a path separator.
    #[error("{what} {value:?} contains '/'")]
    Slash {
        /// Which part of the path.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// The segment contains `..`.
    #[error("{what} {value:?} contains '..'")]
    DotDot {
        /// Which part of the path.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// The segment starts with a character that is not a letter or digit (`.git`, `-x`).
    #[error("{what} {value:?} must start with a letter or digit")]
    BadStart {
        /// Which part of the path.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// The segment contains a character outside the allowed set.
    #[error("{what} {value:?} contains {character:?}; allowed are {allowed}")]
    BadCharacter {
        /// Which part of the path.
        what: &'static str,
        /// The offending value.
        value: String,
        /// The first character that is not allowed.
        character: char,
        /// A human description of the allowed set.
        allowed: &'static str,
    },
    /// A path has no segments at all.
    #[error("repository path is empty")]
    EmptyPath,
}

/// A validated, relative, `/`-separated folder path inside the GitOps repository.
///
/// It can only be built from validated segments, so holders can rely on it never
/// escaping its folder (`..`), never touching `.git`, and never being the root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoPath(String);

impl RepoPath {
    /// Builds a path from segments, validating each one with the DNS-label-ish rules.
    pub fn from_segments<I, S>(segments: I) -> Result<Self, LayoutError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut joined = String::new();
        for segment in segments {
            let segment = segment.as_ref();
            validate_segment("path segment", segment)?;
            if !joined.is_empty() {
                joined.push('/');
            }
            joined.push_str(segment);
        }
        if joined.is_empty() {
            return Err(LayoutError::EmptyPath);
        }
        Ok(Self(joined))
    }

    /// Parses `a/b/c`, validating every segment.
    pub fn parse(path: &str) -> Result<Self, LayoutError> {
        Self::from_segments(path.split('/'))
    }

    /// The path as `a/b/c`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// True when `other` is this path or lies below it.
    pub fn contains(&self, other: &RepoPath) -> bool {
        other.0 == self.0
            || (other.0.len() > self.0.len()
                && other.0.starts_with(&self.0)
                && other.0.as_bytes().get(self.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The folder that holds one environment:
/// `clusters/<cluster>/tenants/<tenant>/<request>`.
pub fn environment_path(cluster: &str, tenant: &str, request: &str) -> Result<RepoPath, LayoutError> {
    validate_segment("cluster", cluster)?;
    validate_segment("tenant", tenant)?;
    validate_segment("request", request)?;
    Ok(RepoPath(format!("clusters/{cluster}/tenants/{tenant}/{request}")))
}

/// Validates one path segment: lowercase letters, digits, `-`, `.` and `_`, starting
/// with a letter or digit, no `..`, at most 253 characters (Kubernetes names fit).
pub fn validate_segment(what: &'static str, value: &str) -> Result<(), LayoutError> {
    check_common(what, value, MAX_SEGMENT_LEN)?;
    if let Some(character) =
        value.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_')))
    {
        return Err(LayoutError::BadCharacter {
            what,
            value: value.to_owned(),
            character,
            allowed: "lowercase letters, digits, '-', '.' and '_'",
        });
    }
    Ok(())
}

/// Validates a file name inside an environment folder: letters (any case), digits,
/// `-`, `.` and `_`, starting with a letter or digit, no `..`, at most 255 characters.
pub fn validate_file_name(name: &str) -> Result<(), LayoutError> {
    let what = "file name";
    check_common(what, name, MAX_FILE_NAME_LEN)?;
    if let Some(character) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))) {
        return Err(LayoutError::BadCharacter {
            what,
            value: name.to_owned(),
            character,
            allowed: "letters, digits, '-', '.' and '_'",
        });
    }
    Ok(())
}

fn check_common(what: &'static str, value: &str, max: usize) -> Result<(), LayoutError> {
    if value.is_empty() {
        return Err(LayoutError::Empty { what });
    }
    if value.len() > max {
        return Err(LayoutError::TooLong { what, value: value.to_owned(), max });
    }
    if value.contains('/') {
        return Err(LayoutError::Slash { what, value: value.to_owned() });
    }
    if value.contains("..") {
        return Err(LayoutError::DotDot { what, value: value.to_owned() });
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(LayoutError::BadStart { what, value: value.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_path_joins_the_layout() {
        let path = environment_path("prod-eu1", "team-a", "web.preview").expect("valid");
        assert_eq!(path.as_str(), "clusters/prod-eu1/tenants/team-a/web.preview");
        assert_eq!(path.segments().count(), 5);
    }

    #[test]
    fn environment_path_rejects_bad_segments() {
        let cases = [
            ("", "t", "r"),
            ("c", "a/b", "r"),
            ("c", "t", ".."),
            ("c", "t", "a..b"),
            ("c", ".git", "r"),
            ("c", "t", "-r"),
            ("C", "t", "r"),
            ("c", "t", "r r"),
            ("c", "t", "r\n"),
            ("c", "t", "ré"),
        ];
        for (cluster, tenant, request) in cases {
            assert!(
                environment_path(cluster, tenant, request).is_err(),
                "{cluster:?}/{tenant:?}/{request:?} should be rejected"
            );
        }
        let long = "a".repeat(254);
        assert!(matches!(environment_path("c", "t", &long), Err(LayoutError::TooLong { .. })));
    }

    #[test]
    fn error_names_the_part() {
        let err = environment_path("c", "t", "..").expect_err("invalid");
        assert_eq!(err.to_string(), "request \"..\" contains '..'");
        let err = environment_path("", "t", "r").expect_err("invalid");
        assert_eq!(err.to_string(), "cluster is empty");
    }

    #[test]
    fn file_names() {
        assert!(validate_file_name("namespace.yaml").is_ok());
        assert!(validate_file_name("ResourceQuota.yaml").is_ok());
        for bad in ["", ".git", "../x", "a/b", "a..yaml", "-x", "a b"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parse_and_contains() {
        let parent = RepoPath::parse("clusters/a").expect("valid");
        let child = RepoPath::parse("clusters/a/tenants").expect("valid");
        let sibling = RepoPath::parse("clusters/ab").expect("valid");
        assert!(parent.contains(&child));
        assert!(parent.contains(&parent));
        assert!(!parent.contains(&sibling));
        assert!(!child.contains(&parent));
        assert!(RepoPath::parse("").is_err());
        assert!(RepoPath::parse("a//b").is_err());
        assert!(RepoPath::parse("/a").is_err());
        assert!(RepoPath::from_segments(Vec::<String>::new()).is_err());
    }
}
