//! With the `tch` feature, puts libtorch's library folder on the rpath of this
//! crate's tests and examples (as the root crate's build script does for its own).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    if let Ok(dir) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", std::path::Path::new(&dir).join("lib").display());
    }
}
