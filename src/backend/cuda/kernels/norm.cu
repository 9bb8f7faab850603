// Normalization family (batch normalisation and friends). No primitives yet; each lands here
// as one extern "C" kernel plus its launch in cuda/norm.rs.
