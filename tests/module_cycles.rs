//! No file-level import cycles in `src/`: a file that uses another (through `crate::`
//! or `super::` paths, in `use` items or inline) must not be used back by it, directly
//! or through other files. A module and the files of its own submodules may use each
//! other (a `mod.rs` declares and re-exports its children, and they read its shared
//! items); test code is left out. Cycles are what made files hard to read on their own
//! (`gitops/change.rs` ↔ `gitops/message.rs` once).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// A module path as segments after `crate` (`["gitops", "redact"]`).
type ModulePath = Vec<String>;

/// The module a file under `src/` defines.
fn module_of(file: &Path) -> ModulePath {
    let relative = file.strip_prefix("src").expect("under src");
    let mut segments: ModulePath =
        relative.with_extension("").iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
        segments.pop();
    }
    segments
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `attrs` hold `#[cfg(test)]`.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string() == "test"))
}

/// Every `crate::`/`super::`/`self::` path a file names outside its test code.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl Paths {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.push(prefix, Some(n.ident.to_string())),
            syn::UseTree::Rename(r) => self.push(prefix, Some(r.ident.to_string())),
            syn::UseTree::Glob(_) => self.push(prefix, None),
            syn::UseTree::Group(g) => g.items.iter().for_each(|item| self.use_tree(prefix, item)),
        }
    }

    fn push(&mut self, prefix: &[String], last: Option<String>) {
        let path: Vec<String> = prefix.iter().cloned().chain(last).collect();
        if path.first().is_some_and(|s| matches!(s.as_str(), "crate" | "super" | "self")) {
            self.0.push(path);
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            _ => &Vec::new(),
        };
        if !is_test(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.push(&segments, None);
        syn::visit::visit_path(self, path);
    }
}

/// The file a path names: the longest prefix of it that is a module with a file.
fn resolve(from: &ModulePath, path: &[String], files: &BTreeMap<ModulePath, PathBuf>) -> Option<PathBuf> {
    let (mut base, mut rest) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        // `super` of a `mod.rs` file and of `x.rs` are both the parent of its module.
        Some("super") => (from[..from.len().saturating_sub(1)].to_vec(), &path[1..]),
        Some("self") => (from.clone(), &path[1..]),
        _ => return None,
    };
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let full: ModulePath = base.into_iter().chain(rest.iter().cloned()).collect();
    (0..=full.len()).rev().find_map(|n| files.get(&full[..n]).cloned())
}

fn is_ancestor(a: &ModulePath, b: &ModulePath) -> bool {
    a.len() < b.len() && b[..a.len()] == a[..]
}

#[test]
fn no_file_of_src_is_part_of_an_import_cycle() {
    let mut all = Vec::new();
    rust_files(Path::new("src"), &mut all);
    // Test-only files and the binary are left out: they import, nothing imports them.
    all.retain(|f| {
        !f.starts_with("src/bin")
            && f.file_name().is_none_or(|n| n != "tests.rs")
            && !f.components().any(|c| c.as_os_str() == "tests")
    });
    let files: BTreeMap<ModulePath, PathBuf> = all.iter().map(|f| (module_of(f), f.clone())).collect();
    assert!(files.len() > 100, "src/ was read ({} files)", files.len());

    let mut uses: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut paths = Paths::default();
        paths.visit_file(&parsed);
        for path in &paths.0 {
            let Some(target) = resolve(module, path, &files) else { continue };
            let target_module = module_of(&target);
            if target != *file && !is_ancestor(module, &target_module) && !is_ancestor(&target_module, module) {
                uses.entry(file.clone()).or_default().insert(target);
            }
        }
    }

    let cycles = cycles(&uses);
    assert!(cycles.is_empty(), "files that use each other:\n{}", cycles.join("\n"));
}

/// Each file that reaches itself again through `uses`, with the way round.
fn cycles(uses: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<String> {
    let mut cycles = Vec::new();
    for start in uses.keys() {
        let (mut seen, mut stack) = (BTreeSet::new(), vec![(start.clone(), vec![start.clone()])]);
        while let Some((file, trail)) = stack.pop() {
            for next in uses.get(&file).into_iter().flatten() {
                if next == start {
                    cycles.push(trail.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" -> "));
                } else if seen.insert(next.clone()) {
                    stack.push((next.clone(), trail.iter().cloned().chain([next.clone()]).collect()));
                }
            }
        }
    }
    cycles
}

#[test]
fn a_cycle_is_found_where_there_is_one() {
    let uses: BTreeMap<PathBuf, BTreeSet<PathBuf>> =
        [("a.rs", vec!["b.rs"]), ("b.rs", vec!["c.rs"]), ("c.rs", vec!["a.rs"]), ("d.rs", vec!["a.rs"])]
            .into_iter()
            .map(|(from, to)| (PathBuf::from(from), to.into_iter().map(PathBuf::from).collect()))
            .collect();
    assert_eq!(cycles(&uses), ["a.rs -> b.rs -> c.rs", "b.rs -> c.rs -> a.rs", "c.rs -> a.rs -> b.rs"]);
}

#[test]
fn paths_resolve_to_the_files_they_name() {
    // The check would pass on anything if `resolve` never matched.
    let files: BTreeMap<ModulePath, PathBuf> = [
        (vec!["gitops".into()], PathBuf::from("src/gitops/mod.rs")),
        (vec!["gitops".into(), "redact".into()], PathBuf::from("src/gitops/redact.rs")),
        (vec!["gitops".into(), "credentials".into()], PathBuf::from("src/gitops/credentials.rs")),
    ]
    .into();
    let from = vec!["gitops".to_owned(), "credentials".to_owned()];
    let path: Vec<String> = ["super", "redact", "Redactor"].iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(resolve(&from, &path, &files), Some(PathBuf::from("src/gitops/redact.rs")));
    let crate_path: Vec<String> =
        ["crate", "gitops", "credentials", "Secret"].iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(resolve(&from, &crate_path, &files), Some(PathBuf::from("src/gitops/credentials.rs")));
}
