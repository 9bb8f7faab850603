// Losses family: softmax and the loss layers' arithmetic. No primitives yet; each lands here
// as one extern "C" kernel plus its launch in cuda/loss.rs.
