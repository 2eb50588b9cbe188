//! Decompresses botocore's SSM service model (`model/ssm-service-2.json.gz`,
//! committed as botocore ships it) into `OUT_DIR`, where `src/model.rs`
//! embeds it as text: the CLI then reads the model without inflating
//! 900 KB at every call.

use std::io::Read as _;

fn main() {
    const GZ: &str = "model/ssm-service-2.json.gz";
    println!("cargo::rerun-if-changed={GZ}");
    let compressed = std::fs::read(GZ).unwrap_or_else(|e| panic!("cannot read {GZ}: {e}"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{GZ} is not gzip of UTF-8 text: {e}"));
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default())
        .join("ssm-service-2.json");
    std::fs::write(&out, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
