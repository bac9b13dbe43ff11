//! Links the TPM 2.0 engine: Debian's static `libtpms.a` (the TCG reference code as libtpms
//! maintains it, built with its OpenSSL backend) plus the libcrypto it calls into.
//! Nothing is compiled here.
//!
//! - Hosted (any OS target): pkg-config supplies the library search path; libcrypto is the
//!   system's shared library.
//! - Freestanding (`target_os = "none"`, feature `freestanding`, the SVSM image): both archives
//!   are linked statically from Debian's multiarch directory (`/usr/lib/x86_64-linux-gnu`, or
//!   `$VTPM_STATIC_LIB_DIR`). The libc/POSIX symbols they need come from the image's libc shim.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=VTPM_STATIC_LIB_DIR");

    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        freestanding();
        return;
    }

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

/// The bare-metal link: both archives statically, no pkg-config (it describes the host).
fn freestanding() {
    if std::env::var_os("CARGO_FEATURE_FREESTANDING").is_none() {
        eprintln!(
            "error: vtpm for target_os = \"none\" needs the `freestanding` feature \
             (no_std build with a spin lock; the SVSM image enables it)"
        );
        std::process::exit(1);
    }
    let dir = std::env::var("VTPM_STATIC_LIB_DIR")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu".to_owned());
    for archive in ["libtpms.a", "libcrypto.a"] {
        let path = std::path::Path::new(&dir).join(archive);
        if !path.is_file() {
            eprintln!(
                "error: {} is missing. The freestanding vTPM links Debian's static archives; \
                 install them with:\n    apt-get install libtpms-dev libssl-dev",
                path.display()
            );
            std::process::exit(1);
        }
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-link-search=native={dir}");
    println!("cargo:rustc-link-lib=static=tpms");
    println!("cargo:rustc-link-lib=static=crypto");
}
