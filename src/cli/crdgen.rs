//! `berth crdgen`: Berth's CustomResourceDefinitions as YAML, from the Rust types.

use std::path::PathBuf;

use clap::Args;

/// Flags of `berth crdgen`.
#[derive(Args)]
pub struct CrdgenArgs {
    /// Folder to write into; prints all of them to stdout when absent.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Prints every CRD, or writes one file per kind under `--out`.
pub fn crdgen(args: &CrdgenArgs) -> Result<(), String> {
    let files = crate::api::crd_files().map_err(|e| format!("cannot serialize the CRDs: {e}"))?;
    match &args.out {
        None => {
            let documents: Vec<&str> = files.iter().map(|(_, yaml)| yaml.as_str()).collect();
            print!("{}", documents.join("---\n"));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            for (name, yaml) in files {
                let path = dir.join(name);
                std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
