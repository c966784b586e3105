//! The checked-in dictionary is what gen_dict.py produces from the installed
//! pydicom (3.0.2) and seed 003. Skipped (with a note) when Python, pydicom
//! or the seed is not available, since `cargo build` must not need them.

use std::path::Path;
use std::process::Command;

#[test]
fn dict_is_current() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import pydicom; print(pydicom.__version__)"])
        .output();
    let version = match probe {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            eprintln!("skipped: {python} with pydicom not available");
            return;
        }
    };
    if version != dicom_gateway_dataset::DICTIONARY_PYDICOM_VERSION {
        eprintln!(
            "skipped: pydicom {version} installed, dictionary generated from {}",
            dicom_gateway_dataset::DICTIONARY_PYDICOM_VERSION
        );
        return;
    }
    let seeds = here.join("../../../shared/seeds");
    if !seeds.exists() {
        eprintln!("skipped: seed 003 not found at {}", seeds.display());
        return;
    }
    let out = Command::new(&python)
        .arg(here.join("gen_dict.py"))
        .arg("--check")
        .output()
        .expect("run gen_dict.py");
    assert!(
        out.status.success(),
        "src/dict_generated.rs is not current: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
