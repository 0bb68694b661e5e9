//! Saves a module's parameters under the names they were built with (the reference state-dict
//! names recorded by `models::layers::Builder`), as one safetensors file of f32 tensors.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use safetensors::tensor::{Dtype, TensorView};

use crate::models::params::param_id;

struct Collect<'a> {
    names: &'a HashMap<ParamId, String>,
    found: Vec<(String, Vec<usize>, Vec<u8>)>,
    unnamed: usize,
}

impl<B: Backend> ModuleVisitor<B> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(name) = self.names.get(&param.id) else {
            self.unnamed += 1;
            return;
        };
        let tensor = param.val();
        let bytes = crate::models::to_host_f32(tensor.clone())
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        self.found
            .push((name.clone(), tensor.dims().to_vec(), bytes));
    }
}

/// The safetensors bytes of `module`'s parameters named by `names`.
pub fn named_safetensors<B: Backend, M: Module<B>>(
    module: &M,
    names: &[String],
) -> std::io::Result<Vec<u8>> {
    let by_id: HashMap<ParamId, String> = names.iter().map(|n| (param_id(n), n.clone())).collect();
    let mut collect = Collect {
        names: &by_id,
        found: Vec::new(),
        unnamed: 0,
    };
    module.visit(&mut collect);
    if collect.unnamed > 0 {
        return Err(std::io::Error::other(format!(
            "{} parameters have no recorded name (the model was not built by the builder)",
            collect.unnamed
        )));
    }
    collect.found.sort_by(|a, b| a.0.cmp(&b.0));
    serialize(&collect.found, Dtype::F32, "pt")
}

/// The safetensors bytes of `tensors` (name, shape, little-endian bytes), all of `dtype`, with
/// `format` as the file's metadata.
pub fn serialize(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    dtype: Dtype,
    format: &str,
) -> std::io::Result<Vec<u8>> {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(dtype, shape.clone(), bytes).map(|v| (name.as_str(), v))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let meta = HashMap::from([("format".to_string(), format.to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Writes `module` to `path` atomically (temporary file, fsync, rename).
pub fn save_named<B: Backend, M: Module<B>>(
    module: &M,
    names: &[String],
    path: &Path,
) -> std::io::Result<()> {
    crate::atomic::write(path, &named_safetensors(module, names)?)
}
