//! Puts the board's memory map where cortex-m-rt's linker script finds it.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let map = if env::var_os("CARGO_FEATURE_CONFORMANCE").is_some() {
        "memory-mps2-an385-test.x"
    } else if env::var_os("CARGO_FEATURE_MPS2_AN385").is_some() {
        "memory-mps2-an385.x"
    } else {
        "memory-lm3s6965.x"
    };
    fs::copy(map, out.join("memory.x")).expect("the memory map is readable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory-lm3s6965.x");
    println!("cargo:rerun-if-changed=memory-mps2-an385.x");
    println!("cargo:rerun-if-changed=memory-mps2-an385-test.x");
    println!("cargo:rustc-link-arg=-Tlink.x");
}
