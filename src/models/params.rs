//! Parameters by name. burn modules report each parameter with its field path, which for the
//! models here is exactly the checkpoint tensor name (`transformer.encoder.layers.0.mlp.
//! dense_4h_to_h.weight`; LoRA matrices end in `.lora.lora_a` / `.lora.lora_b`). Trainers
//! freeze and count parameters through these names.

use std::collections::HashSet;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

/// A parameter whose id is derived from its name, so the same model built twice (a run and its
/// resumption) has the same ids, and optimizer state saved by id finds its parameters again.
pub fn named_param<B: Backend, const D: usize>(
    name: &str,
    tensor: Tensor<B, D>,
) -> Param<Tensor<B, D>> {
    Param::initialized(param_id(name), tensor.require_grad())
}

/// The id `named_param` gives a parameter of this name (FNV-1a of the name).
pub fn param_id(name: &str) -> ParamId {
    let mut hash = 0xcbf29ce484222325u64;
    for byte in name.bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    ParamId::from(hash)
}

/// A parameter's name, id and element count.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedParam {
    pub name: String,
    pub id: ParamId,
    pub numel: usize,
    pub trainable: bool,
}

/// The field path of the parameter being visited: burn calls `enter_module(field)` for every
/// field (parameters included) and `exit_module` after it. Visitors embed one and forward those
/// two calls to it.
#[derive(Default, Debug)]
pub struct PathStack(Vec<String>);

impl PathStack {
    pub fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    pub fn exit(&mut self) {
        self.0.pop();
    }
    /// The dotted name of the current parameter.
    pub fn name(&self) -> String {
        self.0.join(".")
    }
}

#[derive(Default)]
struct Collect {
    path: PathStack,
    found: Vec<NamedParam>,
}

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        self.found.push(NamedParam {
            name: self.path.name(),
            id: param.id,
            numel: tensor.shape().num_elements(),
            trainable: tensor.is_require_grad(),
        });
    }
}

/// Every float parameter of `module`, in field order.
pub fn named_params<B: Backend, M: Module<B>>(module: &M) -> Vec<NamedParam> {
    let mut collect = Collect::default();
    module.visit(&mut collect);
    collect.found
}

struct SetTrainable(HashSet<ParamId>);

impl<B: Backend> ModuleMapper<B> for SetTrainable {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let trainable = self.0.contains(&param.id);
        param.set_require_grad(trainable)
    }
}

/// Marks the parameters whose names satisfy `trainable` as trainable and freezes the rest
/// (frozen parameters get no gradient, so no gradient or optimizer memory is spent on them).
pub fn set_trainable<B: Backend, M: Module<B>>(module: M, trainable: impl Fn(&str) -> bool) -> M {
    let ids = named_params(&module)
        .into_iter()
        .filter(|p| trainable(&p.name))
        .map(|p| p.id)
        .collect();
    module.map(&mut SetTrainable(ids))
}

struct TrainableInFp32;

impl<B: Backend> ModuleMapper<B> for TrainableInFp32 {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|tensor| {
            if !tensor.is_require_grad() || tensor.dtype() == DType::F32 {
                return tensor;
            }
            // Untracked first (burn's `detach` keeps `require_grad`), so the fp32 copy is a leaf
            // of its own, not a cast node.
            tensor
                .set_require_grad(false)
                .cast(DType::F32)
                .require_grad()
        })
    }
}

/// Converts every trainable parameter to fp32 (a no-op for those already fp32, and on the CPU).
pub fn trainable_in_fp32<B: Backend, M: Module<B>>(module: M) -> M {
    module.map(&mut TrainableInFp32)
}

/// `*` matches any run of characters (including dots); everything else matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first)
        || !name[first.len()..].ends_with(last)
        || name.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(
            "transformer.embedding.*",
            "transformer.embedding.word_embeddings.weight"
        ));
        assert!(glob_match(
            "*.layers.1.*",
            "transformer.encoder.layers.1.mlp.dense_4h_to_h.weight"
        ));
        assert!(!glob_match(
            "*.layers.1.*",
            "transformer.encoder.layers.11.mlp.dense_4h_to_h.weight"
        ));
        assert!(glob_match(
            "*layernorm*",
            "transformer.encoder.final_layernorm.weight"
        ));
        assert!(!glob_match(
            "transformer.output_layer.weight",
            "transformer.output_layer.bias"
        ));
    }
}
