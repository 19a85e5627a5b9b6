//! `berth render` and `berth diff`: what Berth would commit for some objects,
//! and how that differs from a GitOps checkout — for review before it happens.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Args;
use kube::ResourceExt;

use super::inputs::{InputError, Inputs};
use crate::{
    gitops::layout,
    render::{self, RenderOptions},
};

/// The objects `berth render` and `berth diff` read.
#[derive(Args)]
pub struct InputArgs {
    /// YAML files or folders holding EnvironmentClasses, Tenants and EnvironmentRequests.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    files: Vec<PathBuf>,
    /// Namespace Argo CD watches for Applications.
    #[arg(long, default_value = "argocd")]
    argocd_namespace: String,
}

impl InputArgs {
    fn tree(&self) -> Result<BTreeMap<String, String>, String> {
        let inputs = Inputs::read(&self.files).map_err(|e| e.to_string())?;
        let options = RenderOptions { argocd_namespace: self.argocd_namespace.clone() };
        rendered_tree(&inputs, &options).map_err(|e| e.to_string())
    }
}

/// Flags of `berth render`.
#[derive(Args)]
pub struct RenderArgs {
    #[command(flatten)]
    inputs: InputArgs,
    /// Write the files under this folder (in the GitOps layout) instead of printing them.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Flags of `berth diff`.
#[derive(Args)]
pub struct DiffArgs {
    #[command(flatten)]
    inputs: InputArgs,
    /// A checkout of the GitOps repository.
    #[arg(long, value_name = "DIR")]
    gitops: PathBuf,
}

/// `berth render`: prints the files, or writes them under `--out`.
pub fn render_command(args: &RenderArgs) -> Result<(), String> {
    let tree = args.inputs.tree()?;
    match &args.out {
        None => print!("{}", print_tree(&tree)),
        Some(dir) => {
            write_tree(&tree, dir).map_err(|e| e.to_string())?;
            eprintln!("wrote {} files under {}", tree.len(), dir.display());
        }
    }
    Ok(())
}

/// `berth diff`: exits 1 when the checkout differs, 0 when it matches.
pub fn diff_command(args: &DiffArgs) -> Result<ExitCode, String> {
    let tree = args.inputs.tree()?;
    let diff = diff_tree(&tree, &args.gitops).map_err(|e| e.to_string())?;
    if diff.is_empty() {
        eprintln!("{} matches what Berth would commit", args.gitops.display());
        return Ok(ExitCode::SUCCESS);
    }
    print!("{diff}");
    Ok(ExitCode::from(1))
}

/// Why `berth render` or `berth diff` stopped.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("request {request}: {source}")]
    Render { request: String, source: render::RenderError },
    #[error("request {request}: {source}")]
    Layout { request: String, source: layout::LayoutError },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    ReadCheckout { path: PathBuf, source: std::io::Error },
    #[error("no EnvironmentRequest in the given files; nothing to render")]
    NothingToRender,
}

/// Every file Berth would commit for the requests in `inputs`: repository path → YAML.
pub fn rendered_tree(inputs: &Inputs, options: &RenderOptions) -> Result<BTreeMap<String, String>, CliError> {
    if inputs.requests.is_empty() {
        return Err(CliError::NothingToRender);
    }
    let mut tree = BTreeMap::new();
    for request in &inputs.requests {
        let key = format!("{}/{}", request.namespace().unwrap_or_default(), request.name_any());
        let (class, tenant) = inputs.class_and_tenant_for(request)?;
        let environment = render::render(class, tenant, request, options)
            .map_err(|source| CliError::Render { request: key.clone(), source })?;
        let folder = layout::environment_path(&environment.cluster, &environment.tenant, &request.name_any())
            .map_err(|source| CliError::Layout { request: key.clone(), source })?;
        for (file, yaml) in environment.files {
            tree.insert(format!("{folder}/{file}"), yaml);
        }
    }
    Ok(tree)
}

/// Prints the tree as one YAML stream, each document headed by its path.
pub fn print_tree(tree: &BTreeMap<String, String>) -> String {
    let documents: Vec<String> = tree.iter().map(|(path, yaml)| format!("# {path}\n{yaml}")).collect();
    documents.join("---\n")
}

/// Writes the tree under `dir`, creating folders; leaves other files alone.
pub fn write_tree(tree: &BTreeMap<String, String>, dir: &Path) -> Result<(), CliError> {
    for (path, yaml) in tree {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| CliError::Write { path: parent.to_owned(), source })?;
        }
        std::fs::write(&target, yaml).map_err(|source| CliError::Write { path: target.clone(), source })?;
    }
    Ok(())
}

/// A unified diff from what `checkout` holds to what Berth would commit, for every
/// environment folder the inputs render (files Berth would delete from those
/// folders included). Empty when the checkout already matches.
pub fn diff_tree(tree: &BTreeMap<String, String>, checkout: &Path) -> Result<String, CliError> {
    let mut paths: BTreeMap<String, ()> = tree.keys().map(|p| (p.clone(), ())).collect();
    let folders: Vec<&str> = tree.keys().filter_map(|p| p.rsplit_once('/').map(|(folder, _)| folder)).collect();
    for folder in folders {
        let dir = checkout.join(folder);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.path().is_file() {
                paths.insert(format!("{folder}/{}", entry.file_name().to_string_lossy()), ());
            }
        }
    }
    let mut out = String::new();
    for path in paths.keys() {
        let current = match std::fs::read_to_string(checkout.join(path)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(CliError::ReadCheckout { path: checkout.join(path), source });
            }
        };
        let desired = tree.get(path).map(String::as_str).unwrap_or_default();
        if current != desired {
            let diff = similar::TextDiff::from_lines(current.as_str(), desired);
            out.push_str(
                &diff.unified_diff().context_radius(3).header(&format!("a/{path}"), &format!("b/{path}")).to_string(),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
