// Solver family: parameter updates. No primitives yet; each lands here as one extern "C"
// kernel plus its launch in cuda/solver.rs.
