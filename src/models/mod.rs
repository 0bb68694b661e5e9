//! Model definitions. Each file mirrors its reference module tree: `glm4` (GLM-4-Voice-9B),
//! `whisper_vq` (its speech tokenizer), `decoder` (GLM-4-Voice-Decoder: `flow`, `hift`), and the
//! speaker encoders `campplus` (CAM++) and `resemblyzer` (GE2E).

pub mod campplus;
pub mod decoder;
pub mod glm4;
pub mod layers;
pub mod padded_matmul;
pub mod params;
pub mod released;
pub mod resemblyzer;
pub mod whisper_vq;

/// A tensor's values on the host as f32 (whatever the backend's float type).
pub fn to_host_f32<B: burn::tensor::backend::Backend, const D: usize>(
    tensor: burn::tensor::Tensor<B, D>,
) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensors convert to f32")
}
