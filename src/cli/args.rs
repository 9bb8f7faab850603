//! Caffe's command lines work with `crema` in place of `caffe`: Caffe (gflags) takes
//! `-model x`, `-model=x`, `--model x` alike, so single-dash long flags are rewritten to
//! double-dash ones before clap sees them.

use std::ffi::OsString;

/// Rewrites `-name` and `-name=value` (a letter, then letters, digits or `_`, at least two
/// characters) to `--name...`. Short flags (`-h`), negative numbers (`-1`) and everything
/// after `--` are left alone.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest = false;
    for arg in args {
        if rest {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        let name = s.strip_prefix('-').filter(|r| !r.starts_with('-'));
        let is_long = name.is_some_and(|r| {
            let n = r.split('=').next().unwrap_or("");
            n.len() >= 2
                && n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if is_long {
            out.push(OsString::from(format!("-{s}")));
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: &[&str]) -> Vec<String> {
        normalize(v.iter().map(OsString::from)).into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn caffe_style_flags() {
        assert_eq!(n(&["crema", "train", "-solver", "s.prototxt"]), ["crema", "train", "--solver", "s.prototxt"]);
        assert_eq!(n(&["crema", "test", "-weights=w.caffemodel"]), ["crema", "test", "--weights=w.caffemodel"]);
        assert_eq!(n(&["crema", "x", "--level", "-1", "-h"]), ["crema", "x", "--level", "-1", "-h"]);
        assert_eq!(n(&["crema", "x", "-sigint_effect", "snapshot"]), ["crema", "x", "--sigint_effect", "snapshot"]);
        assert_eq!(n(&["crema", "--", "-model"]), ["crema", "--", "-model"]);
    }
}
