//! No file-level import cycles in `src/`: a file that uses another must not be used
//! back by it, directly or through other files. A use is any path to another file's
//! item: in `use` items or inline, inside macro calls too, and followed through
//! re-exports (`super::Secret` is `credentials.rs` when `mod.rs` says
//! `pub use credentials::Secret`). A module and the files of its own submodules may
//! use each other's own items (a `mod.rs` declares and re-exports its children, and
//! they read its shared items); test code is left out. Cycles are what made files
//! hard to read on their own (`gitops/change.rs` ↔ `gitops/message.rs` once).

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

/// Whether `attrs` make an item test code: `#[cfg(test)]`, or `cfg(any(test, …))`.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| {
                let tokens = l.tokens.to_string();
                tokens == "test"
                    || (tokens.starts_with("any") && tokens.split(|c: char| !c.is_alphanumeric()).any(|t| t == "test"))
            })
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item;
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// What one file names outside its test code.
#[derive(Default)]
struct Collected {
    /// Inline modules (`mod x { … }`) around the current item.
    scope: Vec<String>,
    /// Each path with the inline modules it was written in.
    paths: Vec<(Vec<String>, Vec<String>)>,
    /// The file's re-exports (`pub use a::b as c`): the name it exports, and the path.
    reexports: Vec<(String, Vec<String>)>,
}

impl Collected {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, public: bool) {
        let leaf = |this: &mut Self, prefix: &[String], name: Option<String>, exported: Option<String>| {
            let path: Vec<String> = prefix.iter().cloned().chain(name).collect();
            if public && this.scope.is_empty() {
                this.reexports.push((exported.unwrap_or_else(|| "*".to_owned()), path.clone()));
            }
            this.paths.push((this.scope.clone(), path));
        };
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, public);
                prefix.pop();
            }
            syn::UseTree::Name(n) => leaf(self, prefix, Some(n.ident.to_string()), Some(n.ident.to_string())),
            syn::UseTree::Rename(r) => leaf(self, prefix, Some(r.ident.to_string()), Some(r.rename.to_string())),
            syn::UseTree::Glob(_) => leaf(self, prefix, None, None),
            syn::UseTree::Group(g) => g.items.iter().for_each(|item| self.use_tree(prefix, item, public)),
        }
    }
}

impl<'ast> Visit<'ast> for Collected {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if is_test(item_attrs(item)) {
            return;
        }
        match item {
            syn::Item::Mod(m) if m.content.is_some() => {
                self.scope.push(m.ident.to_string());
                syn::visit::visit_item(self, item);
                self.scope.pop();
            }
            _ => syn::visit::visit_item(self, item),
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            _ => return syn::visit::visit_impl_item(self, item),
        };
        if !is_test(attrs) {
            syn::visit::visit_impl_item(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let public = !matches!(item.vis, syn::Visibility::Inherited);
        self.use_tree(&mut Vec::new(), &item.tree, public);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.paths.push((self.scope.clone(), segments));
        syn::visit::visit_path(self, path);
    }

    /// Macro arguments are tokens to syn: `crate::`/`super::`/`self::` paths among them.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let tokens: Vec<String> = mac.tokens.to_string().split_whitespace().map(str::to_owned).collect();
        for (i, token) in tokens.iter().enumerate() {
            if matches!(token.as_str(), "crate" | "super" | "self") && tokens.get(i + 1).is_some_and(|t| t == "::") {
                let mut path = vec![token.clone()];
                let mut rest = tokens[i + 1..].chunks(2);
                while let Some([colons, name]) = rest.next() {
                    if colons != "::" || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        break;
                    }
                    path.push(name.clone());
                }
                self.paths.push((self.scope.clone(), path));
            }
        }
        syn::visit::visit_macro(self, mac);
    }
}

/// Every file of a crate: its module, what it names, what it re-exports.
struct Crate {
    files: BTreeMap<ModulePath, PathBuf>,
    collected: BTreeMap<PathBuf, Collected>,
}

impl Crate {
    /// `sources`: path under `src/` → Rust source.
    fn parse(sources: &BTreeMap<PathBuf, String>) -> Self {
        let files = sources.keys().map(|f| (module_of(f), f.clone())).collect();
        let collected = sources
            .iter()
            .map(|(file, text)| {
                let parsed = syn::parse_file(text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let mut collected = Collected::default();
                collected.visit_file(&parsed);
                (file.clone(), collected)
            })
            .collect();
        Self { files, collected }
    }

    /// The file that defines what `path` names, written in module `from`, following
    /// re-exports; `None` for paths outside the crate (std, other crates, locals).
    fn resolve(&self, from: &[String], path: &[String], depth: usize) -> Option<PathBuf> {
        let (mut base, mut rest): (ModulePath, &[String]) = match path.first().map(String::as_str) {
            Some("crate") => (Vec::new(), &path[1..]),
            Some("super") => (from[..from.len().saturating_sub(1)].to_vec(), &path[1..]),
            Some("self") => (from.to_vec(), &path[1..]),
            // A path may start with a child module's name (`use credentials::Secret`).
            Some(first) if self.files.contains_key(&[from, &[first.to_owned()]].concat()) => (from.to_vec(), path),
            _ => return None,
        };
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        let full: ModulePath = base.into_iter().chain(rest.iter().cloned()).collect();
        let n = (0..=full.len()).rev().find(|n| self.files.contains_key(&full[..*n]))?;
        let file = self.files.get(&full[..n])?;
        let Some(name) = full.get(n).filter(|_| depth < 8) else { return Some(file.clone()) };
        // An item the file re-exports is the defining file's.
        let reexports = self.collected.get(file).map(|c| c.reexports.as_slice()).unwrap_or_default();
        let module = &full[..n];
        let named = reexports.iter().filter(|(exported, _)| exported == name);
        let globbed = reexports
            .iter()
            .filter(|(exported, _)| exported == "*")
            .map(|(_, path)| (String::new(), path.iter().cloned().chain([name.clone()]).collect::<Vec<_>>()));
        let followed = named
            .cloned()
            .chain(globbed)
            .find_map(|(_, target)| self.resolve(module, &target, depth + 1).filter(|found| found != file));
        Some(followed.unwrap_or_else(|| file.clone()))
    }

    /// Which files each file uses, leaving out a module's own files and its submodules'.
    fn uses(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let mut uses: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for (module, file) in &self.files {
            for (scope, path) in &self.collected[file].paths {
                let from: ModulePath = module.iter().chain(scope).cloned().collect();
                let Some(target) = self.resolve(&from, path, 0) else { continue };
                let target_module = module_of(&target);
                if target != *file && !is_ancestor(module, &target_module) && !is_ancestor(&target_module, module) {
                    uses.entry(file.clone()).or_default().insert(target);
                }
            }
        }
        uses
    }
}

fn is_ancestor(a: &ModulePath, b: &ModulePath) -> bool {
    a.len() < b.len() && b[..a.len()] == a[..]
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
fn no_file_of_src_is_part_of_an_import_cycle() {
    let mut all = Vec::new();
    rust_files(Path::new("src"), &mut all);
    // Test-only files and the binary are left out: they import, nothing imports them.
    all.retain(|f| {
        !f.starts_with("src/bin")
            && f.file_name().is_none_or(|n| n != "tests.rs")
            && !f.components().any(|c| c.as_os_str() == "tests")
    });
    let sources: BTreeMap<PathBuf, String> =
        all.into_iter().map(|f| (f.clone(), std::fs::read_to_string(&f).expect("read"))).collect();
    let uses = Crate::parse(&sources).uses();
    // The check means something only if it sees the crate's uses.
    assert!(uses.values().map(BTreeSet::len).sum::<usize>() > 200, "uses seen: {uses:?}");
    let cycles = cycles(&uses);
    assert!(cycles.is_empty(), "files that use each other:\n{}", cycles.join("\n"));
}

/// A small crate as in-memory sources.
fn sources(files: &[(&str, &str)]) -> BTreeMap<PathBuf, String> {
    files.iter().map(|(path, text)| (PathBuf::from(path), (*text).to_owned())).collect()
}

#[test]
fn a_cycle_through_a_re_export_a_macro_or_a_nested_path_is_found() {
    let gitops_mod = "mod credentials; mod redact; pub use credentials::Secret;";
    let credentials = "use super::redact::Redactor; pub struct Secret;";
    // The cycle the test was written for, spelled through gitops/mod.rs's re-export.
    let through_reexport = sources(&[
        ("src/lib.rs", "pub mod gitops;"),
        ("src/gitops/mod.rs", gitops_mod),
        ("src/gitops/credentials.rs", credentials),
        ("src/gitops/redact.rs", "pub struct Redactor(Option<super::Secret>);"),
    ]);
    assert_eq!(
        cycles(&Crate::parse(&through_reexport).uses()),
        ["src/gitops/credentials.rs -> src/gitops/redact.rs", "src/gitops/redact.rs -> src/gitops/credentials.rs"]
    );
    // Named only inside a macro call, and from an inline module with `super::super`.
    for redact in [
        "pub fn f() { assert!(crate::gitops::credentials::Secret::ok()); }",
        "mod inner { pub fn f() -> super::super::credentials::Secret { todo!() } }",
    ] {
        let crate_ = sources(&[
            ("src/lib.rs", "pub mod gitops;"),
            ("src/gitops/mod.rs", gitops_mod),
            ("src/gitops/credentials.rs", credentials),
            ("src/gitops/redact.rs", redact),
        ]);
        assert_eq!(cycles(&Crate::parse(&crate_).uses()).len(), 2, "{redact}");
    }
}

#[test]
fn test_code_and_a_module_with_its_own_submodules_are_no_cycle() {
    let crate_ = sources(&[
        ("src/lib.rs", "pub mod gitops;"),
        ("src/gitops/mod.rs", "mod credentials; mod redact; pub struct Shared; pub use credentials::Secret;"),
        ("src/gitops/credentials.rs", "use super::{Shared, redact::Redactor}; pub struct Secret;"),
        (
            "src/gitops/redact.rs",
            "pub struct Redactor; #[cfg(test)] mod tests { use super::super::Secret; } \
             impl Redactor { #[cfg(test)] fn t() -> crate::gitops::credentials::Secret { todo!() } }",
        ),
    ]);
    let uses = Crate::parse(&crate_).uses();
    assert_eq!(
        uses,
        BTreeMap::from([(
            PathBuf::from("src/gitops/credentials.rs"),
            BTreeSet::from([PathBuf::from("src/gitops/redact.rs")])
        )])
    );
    assert!(cycles(&uses).is_empty());
}

#[test]
fn the_cycle_finder_reports_each_file_on_a_cycle() {
    let uses: BTreeMap<PathBuf, BTreeSet<PathBuf>> =
        [("a.rs", vec!["b.rs"]), ("b.rs", vec!["c.rs"]), ("c.rs", vec!["a.rs"]), ("d.rs", vec!["a.rs"])]
            .into_iter()
            .map(|(from, to)| (PathBuf::from(from), to.into_iter().map(PathBuf::from).collect()))
            .collect();
    assert_eq!(cycles(&uses), ["a.rs -> b.rs -> c.rs", "b.rs -> c.rs -> a.rs", "c.rs -> a.rs -> b.rs"]);
}
