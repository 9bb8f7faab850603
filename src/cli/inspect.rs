//! `crema inspect`: a net layer by layer — wiring, top shapes, learnable blobs, FLOPs and
//! memory — and, given weights, which of their blobs match the net.

use super::device::{mib, DeviceOpts, Opened};
use super::{parse_phase, split_list};
use crema::backend::Backend;
use crema::blob::shape_string;
use crema::net::Net;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    net: super::common::NetOpts,
    #[command(flatten)]
    device: DeviceOpts,
    /// Phase to build the net in.
    #[arg(long, default_value = "TEST")]
    phase: String,
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    let phase = parse_phase(&a.phase)?;
    // Weights are compared, not loaded: a mismatch is reported rather than refused.
    let weights = a.net.weights.take();
    match a.device.open()? {
        Opened::Cpu(be) => go(be, &a, phase, weights.as_deref()),
        Opened::Cuda(be) => go(be, &a, phase, weights.as_deref()),
    }
}

fn go<B: Backend>(be: B, a: &Args, phase: crema::proto::Phase, weights: Option<&str>) -> anyhow::Result<()> {
    let mut net = a.net.build(be, phase, |_| {})?;
    print_layers(&net);
    if let Some(w) = weights {
        for file in split_list(w) {
            print_weights_match(&net, &PathBuf::from(file))?;
        }
    }
    print_device_memory(&mut net);
    Ok(())
}

/// On a backend that counts its memory (the GPU's): what the built net holds, and what one
/// forward/backward pass adds (gradients, caches, the convolution workspace).
fn print_device_memory<B: Backend>(net: &mut Net<B>) {
    let be = net.backend().clone();
    let Some((built, _)) = be.memory_usage() else { return };
    println!("device:               {}", be.describe());
    let mut pass = || -> anyhow::Result<()> {
        super::time::fill_inputs(net)?;
        net.forward()?;
        net.backward()?;
        be.synchronize()?;
        Ok(())
    };
    let after = match pass() {
        Ok(()) => {
            let (now, peak) = be.memory_usage().unwrap_or((0, 0));
            format!("{:.1} MiB after one forward/backward (peak {:.1} MiB)", mib(now), mib(peak))
        }
        Err(e) => format!("not measured after forward/backward (the pass failed: {e:#})"),
    };
    println!("device memory:        {:.1} MiB once built; {after}", mib(built));
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn print_layers<B: Backend>(net: &Net<B>) {
    println!("net `{}` ({:?}): {} layers", net.name(), net.phase(), net.layers().len());
    println!("{:<28} {:<18} {:<44} {:<24} {:>12} {:>10}", "layer", "type", "bottoms -> tops", "top shapes", "params", "GFLOP");
    let (mut total_params, mut total_flops) = (0usize, 0u64);
    for (i, l) in net.layers().iter().enumerate() {
        let wiring = format!(
            "{} -> {}",
            l.bottoms.iter().map(|&b| net.blob_name(b)).collect::<Vec<_>>().join(", "),
            l.tops.iter().map(|&t| net.blob_name(t)).collect::<Vec<_>>().join(", ")
        );
        let tops: Vec<String> = l.tops.iter().map(|&t| format!("{:?}", net.blobs()[t].shape())).collect();
        let params = net.layer_params(i);
        let count: usize = params.iter().map(|p| p.count()).sum();
        let bshapes: Vec<&[usize]> = l.bottoms.iter().map(|&b| net.blobs()[b].shape()).collect();
        let tshapes: Vec<&[usize]> = l.tops.iter().map(|&t| net.blobs()[t].shape()).collect();
        let flops = l.layer.flops(&bshapes, &tshapes);
        total_params += count;
        total_flops += flops;
        println!(
            "{:<28} {:<18} {:<44} {:<24} {:>12} {:>10.3}",
            l.name(),
            l.type_name(),
            wiring,
            tops.join(" "),
            count,
            flops as f64 / 1e9
        );
        for p in params {
            println!("{:<28}   param {}", "", shape_string(p.shape()));
        }
        if let Some(host) = l.fused_into {
            println!("{:<28}   runs inside {} (fused; CREMA_FUSE=0 runs it on its own)", "", net.layers()[host].name());
        }
    }
    let data = net.data_memory();
    let diffs = net.diff_memory();
    let par: usize = net.params().iter().map(|b| b.count() * if b.has_diff() { 2 } else { 1 }).sum();
    println!();
    println!("learnable parameters: {total_params} ({} unique)", net.params().iter().map(|p| p.count()).sum::<usize>());
    println!("forward compute:      {:.3} GFLOP", total_flops as f64 / 1e9);
    if diffs.owned == 0 {
        println!("activation memory:    {} (data)", human(data.owned as u64));
    } else {
        // Training shares memory between blobs whose values, or gradients, are not live together.
        println!(
            "activation memory:    {} data + {} diff ({} data + {} diff shared in training)",
            human(data.owned as u64),
            human(diffs.owned as u64),
            human(data.shared as u64),
            human(diffs.shared as u64)
        );
    }
    println!("forward only:         {} data shared (test nets, crema test, crema segment)", human(data.forward_only as u64));
    let inner: usize = net.layers().iter().map(|l| l.layer.inner_bytes()).sum();
    if inner > 0 {
        println!("inside layers:        {} (the nets LSTM, RNN and SPP run inside them)", human(inner as u64));
    }
    println!("parameter memory:     {}", human(par as u64 * 4));
    println!("net outputs:          {}", net.outputs().iter().map(|&o| net.blob_name(o)).collect::<Vec<_>>().join(", "));
}

fn print_weights_match<B: Backend>(net: &Net<B>, file: &PathBuf) -> anyhow::Result<()> {
    let w = crema::io::read_weights(file)?;
    println!();
    println!("weights {} ({} layers in the file):", file.display(), w.layers.len());
    for layer in &w.layers {
        if layer.blobs.is_empty() {
            continue;
        }
        let Some(li) = net.layer_index(&layer.name) else {
            println!("  {:<28} no layer of this name in the net: ignored", layer.name);
            continue;
        };
        let params = net.layer_params(li);
        if params.len() != layer.blobs.len() {
            println!("  {:<28} MISMATCH: {} blobs in the file, {} in the net", layer.name, layer.blobs.len(), params.len());
            continue;
        }
        for (j, (b, p)) in layer.blobs.iter().zip(&params).enumerate() {
            let ok = if b.legacy_4d { crema::net::legacy_shape_equals(&b.shape, p.shape()) } else { b.shape == p.shape() };
            if ok {
                println!("  {:<28} blob {j}: matched {}", layer.name, shape_string(p.shape()));
            } else {
                println!("  {:<28} blob {j}: MISMATCH file {} vs net {}", layer.name, shape_string(&b.shape), shape_string(p.shape()));
            }
        }
    }
    for (li, l) in net.layers().iter().enumerate() {
        if !net.layer_params(li).is_empty() && w.layer(l.name()).is_none() {
            println!("  {:<28} not in the file: keeps its filler values", l.name());
        }
    }
    Ok(())
}
