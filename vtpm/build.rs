//! Links the TPM 2.0 engine: Debian's static `libtpms.a` (the TCG reference code as libtpms
//! maintains it, built with its OpenSSL backend) plus the system libcrypto it calls into.
//! Nothing is compiled here: pkg-config only supplies the library search path.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let lib = match pkg_config::Config::new()
        .cargo_metadata(false)
        .env_metadata(true)
        .probe("libtpms")
    {
        Ok(lib) => lib,
        Err(err) => {
            eprintln!(
                "error: pkg-config cannot find libtpms ({err}).\n\
                 The vtpm crate links Debian's static libtpms.a and the system libcrypto; \
                 install them with:\n    apt-get install libtpms-dev libssl-dev pkg-config"
            );
            std::process::exit(1);
        }
    };

    // pkg-config drops system directories from `--libs`, so also ask for `libdir`.
    let mut dirs: Vec<String> = lib
        .link_paths
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    if let Ok(libdir) = pkg_config::get_variable("libtpms", "libdir") {
        if !libdir.is_empty() && !dirs.contains(&libdir) {
            dirs.push(libdir);
        }
    }
    for dir in &dirs {
        println!("cargo:rustc-link-search=native={dir}");
    }
    // pkg-config's libtpms.pc names the shared library only; ask for the archive explicitly so
    // the engine is linked into the binary, and add libcrypto (libtpms.pc has no Libs.private).
    println!("cargo:rustc-link-lib=static=tpms");
    println!("cargo:rustc-link-lib=dylib=crypto");
}
