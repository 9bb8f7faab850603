//! The search on fake folder trees.

use super::*;
use std::fs;

/// A fake file system root with helpers to create library files.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        Tree { dir: tempfile::tempdir().unwrap() }
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    /// Creates `rel` (a file; parents made) under the root.
    fn file(&self, rel: &str) -> PathBuf {
        let p = self.root().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"\x7fELF fake").unwrap();
        p
    }
    fn env(&self) -> SearchEnv {
        SearchEnv { root: self.root().to_path_buf(), ..SearchEnv::default() }
    }
}

#[test]
fn system_folders_and_toolkits_are_searched_newest_first() {
    let t = Tree::new();
    t.file("usr/lib/x86_64-linux-gnu/libcuda.so.1");
    t.file("usr/local/cuda-12.4/lib64/libcublas.so.12");
    t.file("usr/local/cuda-13.0/lib64/libcublas.so.13");
    t.file("usr/local/cuda-9.2/lib64/libcublas.so.9");
    let dirs = search_dirs(&t.env());
    let pos = |rel: &str| dirs.iter().position(|d| d == &t.root().join(rel)).unwrap_or_else(|| panic!("{rel} not in {dirs:?}"));
    assert!(pos("usr/lib/x86_64-linux-gnu") < pos("usr/local/cuda-13.0/lib64"));
    assert!(pos("usr/local/cuda-13.0/lib64") < pos("usr/local/cuda-12.4/lib64"));
    assert!(pos("usr/local/cuda-12.4/lib64") < pos("usr/local/cuda-9.2/lib64"));
    let driver = candidates(&DRIVER, &dirs);
    assert_eq!(driver[0].path, t.root().join("usr/lib/x86_64-linux-gnu/libcuda.so.1"));
}

#[test]
fn env_folders_come_first_and_missing_ones_are_skipped() {
    let t = Tree::new();
    let mine = t.file("custom/one/libcuda.so.1");
    t.file("usr/lib/x86_64-linux-gnu/libcuda.so.1");
    let mut env = t.env();
    env.crema_lib_path = Some(format!("{}:{}", t.root().join("does/not/exist").display(), mine.parent().unwrap().display()));
    let dirs = search_dirs(&env);
    assert_eq!(dirs[0], mine.parent().unwrap());
    assert!(!dirs.iter().any(|d| d.ends_with("does/not/exist")));
    assert_eq!(candidates(&DRIVER, &dirs)[0].path, mine);
}

#[test]
fn ld_so_conf_includes_are_followed() {
    let t = Tree::new();
    fs::create_dir_all(t.root().join("etc/ld.so.conf.d")).unwrap();
    fs::write(t.root().join("etc/ld.so.conf"), "# comment\ninclude /etc/ld.so.conf.d/*.conf\n/opt/direct/lib\n").unwrap();
    fs::write(t.root().join("etc/ld.so.conf.d/cuda.conf"), "/opt/nvidia/lib64 # trailing comment\n").unwrap();
    fs::write(t.root().join("etc/ld.so.conf.d/other.txt"), "/opt/ignored\n").unwrap();
    let dirs = ld_so_conf_dirs(&t.env());
    assert_eq!(dirs, vec![t.root().join("opt/nvidia/lib64"), t.root().join("opt/direct/lib")]);
}

#[test]
fn pip_wheels_are_found_in_venvs_user_and_system_site_packages() {
    let t = Tree::new();
    // The CUDA 13 wheels share one folder; cuDNN has its own.
    let venv = "opt/torch/.venv/lib/python3.12/site-packages/nvidia";
    t.file(&format!("{venv}/cu13/lib/libcublas.so.13"));
    t.file(&format!("{venv}/cu13/lib/libcublasLt.so.13"));
    t.file(&format!("{venv}/cu13/lib/libnvrtc.so.13"));
    t.file(&format!("{venv}/cu13/lib/libnvrtc-builtins.so.13.0"));
    t.file(&format!("{venv}/cu13/lib/libnvrtc-builtins.alt.so.13.0"));
    for sub in ["", "_graph", "_ops", "_cnn", "_engines_precompiled", "_heuristic"] {
        t.file(&format!("{venv}/cudnn/lib/libcudnn{sub}.so.9"));
    }
    let user = t.file("home/me/.local/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12");
    let mut env = t.env();
    env.home = Some(t.root().join("home/me"));
    let dirs = search_dirs(&env);

    let cublas = candidates(&CUBLAS, &dirs);
    assert_eq!(cublas.len(), 1);
    assert!(cublas[0].path.ends_with("cu13/lib/libcublas.so.13"));
    assert_eq!(cublas[0].companions.len(), 1);
    assert!(cublas[0].companions[0].0.ends_with("libcublasLt.so.13"));

    // Version 13 is preferred to 12 wherever each is; the builtins come along, not the .alt ones.
    let nvrtc = candidates(&NVRTC, &dirs);
    assert_eq!(nvrtc.len(), 2);
    assert!(nvrtc[0].path.ends_with("cu13/lib/libnvrtc.so.13"));
    assert_eq!(nvrtc[0].companions.iter().map(|c| c.0.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(), ["libnvrtc-builtins.so.13.0"]);
    assert_eq!(nvrtc[1].path, user);
    assert_eq!(nvrtc[1].missing, vec!["libnvrtc-builtins.so.12".to_string()]);

    let cudnn = candidates(&CUDNN, &dirs);
    assert_eq!(cudnn.len(), 1);
    assert!(cudnn[0].missing.is_empty(), "{:?}", cudnn[0].missing);
    let names: Vec<_> = cudnn[0].companions.iter().map(|c| c.0.file_name().unwrap().to_str().unwrap().to_string()).collect();
    assert_eq!(names, ["libcudnn_graph.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_engines_precompiled.so.9", "libcudnn_heuristic.so.9"]);
}

#[test]
fn a_missing_cudnn_sub_library_is_named() {
    let t = Tree::new();
    t.file("usr/lib/x86_64-linux-gnu/libcudnn.so.9");
    t.file("usr/lib/x86_64-linux-gnu/libcudnn_graph.so.9");
    let cudnn = candidates(&CUDNN, &search_dirs(&t.env()));
    assert_eq!(cudnn[0].missing, ["libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_engines_precompiled.so.9"]);
}

#[test]
fn companions_elsewhere_are_found_when_not_beside() {
    let t = Tree::new();
    t.file("usr/local/cuda/lib64/libcublas.so.13");
    let lt = t.file("usr/lib/x86_64-linux-gnu/libcublasLt.so.13");
    let c = candidates(&CUBLAS, &search_dirs(&t.env()));
    assert_eq!(c[0].companions, vec![(lt, true)]);
}

#[test]
fn python_on_path_leads_to_its_site_packages() {
    let t = Tree::new();
    t.file("srv/env/bin/python3");
    let lib = t.file("srv/env/lib/python3.13/site-packages/nvidia/cudnn/lib/libcudnn.so.9");
    let mut env = t.env();
    env.path = Some(format!("/nonexistent:{}", t.root().join("srv/env/bin").display()));
    assert!(search_dirs(&env).contains(&lib.parent().unwrap().to_path_buf()));
    // And $VIRTUAL_ENV without python on PATH.
    let lib2 = t.file("elsewhere/lib/python3.10/site-packages/nvidia/cublas/lib/libcublas.so.12");
    let mut env = t.env();
    env.virtual_env = Some(t.root().join("elsewhere"));
    assert!(search_dirs(&env).contains(&lib2.parent().unwrap().to_path_buf()));
}

#[test]
fn nothing_found_in_an_empty_tree() {
    let t = Tree::new();
    let dirs = search_dirs(&t.env());
    for spec in [&DRIVER, &NVRTC, &CUBLAS, &CUDNN] {
        assert!(candidates(spec, &dirs).is_empty(), "{}", spec.what);
    }
}

#[test]
fn globbing_and_ordering() {
    assert!(wildcard("python3*", "python3.12"));
    assert!(wildcard("cuda-*", "cuda-13.0"));
    assert!(!wildcard("cuda-*", "cuda"));
    assert!(wildcard("a*b*c", "a-x-b-y-c"));
    assert!(!wildcard("a*b*c", "a-x-c"));
    assert_eq!(natural_cmp("python3.12", "python3.9"), std::cmp::Ordering::Greater);
    assert_eq!(natural_cmp("cuda-13.0", "cuda-9.2"), std::cmp::Ordering::Greater);
    let t = Tree::new();
    t.file("x/python3.9/f");
    t.file("x/python3.12/f");
    t.file("x/other/f");
    let got = glob(&t.root().join("x/python3*/f"));
    assert_eq!(got, vec![t.root().join("x/python3.12/f"), t.root().join("x/python3.9/f")]);
}
