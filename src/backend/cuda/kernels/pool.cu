// Pooling family: pooling and SegNet's upsampling by pooling masks. No primitives yet;
// each lands here as one extern "C" kernel plus its launch in cuda/pool.rs.
