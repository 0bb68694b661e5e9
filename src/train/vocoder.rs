//! Stage two, part two: the HiFT vocoder trained from scratch as a GAN ([`super::gan`]) in the
//! [training loop](super::driver), on the character's utterances; the held-out score is the mel
//! L1 on whole utterances with fixed noise.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::driver::{self, Measured, Names, Part, Settings, Start, StepInput};
use super::gan::{crops, discriminator_channels, fresh_discriminators, gan_batch, Gan, LossMel};
use super::resume::ResumeSection;
use super::stage_two::StageTwo;
use super::step::StepOutcome;
use super::Adam;
use crate::checkpoint::named::save_named;
use crate::checkpoint::tensors::TensorStore;
use crate::data::decoder_data::{DecoderData, Utterance};
use crate::faults::PartFaults;
use crate::models::decoder::config::HiftConfig;
use crate::models::decoder::hift::discriminators::Discriminators;
use crate::models::decoder::hift::{vocode, Hift};
use crate::models::decoder::{fresh_hift, Named, HIFT_FILE};
use crate::models::layers::Builder;
use crate::plan::steps::{self, vocoder_crops};
use crate::recipe::Recipe;
use crate::report::PartReport;
use crate::rng::{Rng, VOCODER_EVAL_STREAM, VOCODER_SHUFFLE_STREAM, VOCODER_STREAM};

const NAMES: Names = Names {
    label: "decoder vocoder",
    part: "hift",
    resuming: "the decoder vocoder",
    steps: "decoder vocoder steps",
    title: "stage two (vocoder)",
    plot_title: "stage two: vocoder mel L1",
    recipe_key: "decoder.hift",
    loss: "mel L1",
    throughput: "mel_frames_per_second",
};
const OPTIMIZER_GENERATOR_FILE: &str = "optimizer_generator";
const OPTIMIZER_DISCRIMINATORS_FILE: &str = "optimizer_discriminators";
const DISCRIMINATORS_FILE: &str = "discriminators.safetensors";
/// Mean |log-mel(generated) - log-mel(reference)| over held-out utterances (whole utterances,
/// fixed noise), weighted by frames.
pub fn eval_vocoder<B: Backend>(
    hift: &Hift<B>,
    c: &HiftConfig,
    items: &[Utterance],
    loss_mel: &LossMel<B>,
    seed: u64,
    device: &B::Device,
) -> f64 {
    let (mut total, mut frames) = (0.0, 0usize);
    for (i, u) in items.iter().enumerate() {
        let mut rng = Rng::for_step(seed, VOCODER_EVAL_STREAM, i as u64);
        let crop = crops(&[u], u.frames, c.samples_per_frame(), &mut rng);
        let mel = Tensor::<B, 3>::from_data(TensorData::new(crop.mel, [1, 80, u.frames]), device);
        let real = Tensor::<B, 2>::from_data(
            TensorData::new(crop.audio, [1, u.frames * c.samples_per_frame()]),
            device,
        );
        let (fake, _) = vocode(hift, c, mel, &mut rng);
        let l1: f64 = (loss_mel.log_mel(fake) - loss_mel.log_mel(real))
            .abs()
            .mean()
            .into_scalar()
            .elem();
        total += l1 * u.frames as f64;
        frames += u.frames;
    }
    super::weighted_mean(total, frames)
}

/// The vocoder in the training loop: the GAN and the utterances it crops.
struct VocoderPart<'a, B: AutodiffBackend> {
    gan: Gan<B>,
    generator_names: Vec<String>,
    discriminator_names: Vec<String>,
    data: &'a DecoderData,
    recipe: &'a Recipe,
    config: &'a HiftConfig,
    loss_mel: LossMel<B>,
    eval_mel: LossMel<B::InnerBackend>,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> Part for VocoderPart<'_, B> {
    fn batches(&mut self, epoch: usize) -> Vec<Vec<usize>> {
        // A seeded shuffle of the utterances per epoch, cut into batches.
        let mut order: Vec<usize> = (0..self.data.train.len()).collect();
        let mut shuffle = Rng::for_step(self.recipe.seed, VOCODER_SHUFFLE_STREAM, epoch as u64);
        for i in (1..order.len()).rev() {
            order.swap(i, shuffle.below_or_equal(i));
        }
        let (crops, _) = vocoder_crops(&self.recipe.decoder.hift);
        order.chunks(crops).map(<[usize]>::to_vec).collect()
    }

    fn step(mut self, group: &[Vec<usize>], input: StepInput) -> (Self, Measured) {
        let mut rng = Rng::for_step(self.recipe.seed, VOCODER_STREAM, input.step as u64);
        // Gradient accumulation is 1: a group is one batch.
        let items: Vec<&Utterance> = group[0].iter().map(|&i| &self.data.train[i]).collect();
        let (_, segment) = vocoder_crops(&self.recipe.decoder.hift);
        let hop = self.config.samples_per_frame();
        let crop = gan_batch::<B>(&items, segment, hop, &mut rng, self.device);
        let frames = crop.frames();
        let (gan, outcome) = self.gan.step(
            crop,
            self.config,
            &self.loss_mel,
            &mut rng,
            input.lr,
            self.recipe.decoder.hift.train.clip_grad_norm,
            input.poison,
        );
        self.gan = gan;
        let measured = Measured {
            outcome: StepOutcome {
                loss: outcome.mel_l1(),
                grad_norm: outcome.generator_grad_norm,
                applied: outcome.applied,
            },
            work: frames,
            extra: outcome.terms(),
        };
        (self, measured)
    }

    fn evaluate(&self) -> Option<f64> {
        (!self.data.validation.is_empty()).then(|| {
            eval_vocoder(
                &self.gan.hift.valid(),
                self.config,
                &self.data.validation,
                &self.eval_mel,
                self.recipe.seed,
                self.device,
            )
        })
    }

    fn save_weights(&self, dir: &Path) -> std::io::Result<()> {
        save_named(&self.gan.hift, &self.generator_names, &dir.join(HIFT_FILE))
    }

    fn save_training_state(&self, dir: &Path) -> std::io::Result<()> {
        let gan = &self.gan;
        save_named(
            &gan.disc,
            &self.discriminator_names,
            &dir.join(DISCRIMINATORS_FILE),
        )?;
        super::checkpoints::write_record::<B, _>(
            gan.opt_g.to_record(),
            &dir.join(OPTIMIZER_GENERATOR_FILE),
        )?;
        super::checkpoints::write_record::<B, _>(
            gan.opt_d.to_record(),
            &dir.join(OPTIMIZER_DISCRIMINATORS_FILE),
        )
    }
}

/// Trains (or resumes, or just loads when finished) the vocoder in `part_dir`.
pub fn train_vocoder<B: AutodiffBackend>(
    inputs: &StageTwo<B>,
    part_dir: &Path,
    faults: &PartFaults,
) -> Result<(Named<Hift<B>>, PartReport), String> {
    let (recipe, device) = (inputs.recipe, inputs.device);
    let part = &recipe.decoder.hift;
    if part.train.gradient_accumulation != 1 {
        return Err("decoder.hift.gradient_accumulation must be 1: the GAN alternates discriminator and generator updates every batch".into());
    }
    let c = &inputs.config.hift;
    let start = Start::open(
        part_dir,
        recipe,
        &part.train,
        ResumeSection::Hift,
        inputs.resume,
    )?;
    let mut opt_g: Adam<Hift<B>, B> = super::adamw(&part.train.optimizer).init();
    let mut opt_d: Adam<Discriminators<B>, B> = super::adamw(&part.train.optimizer).init();
    let channels = discriminator_channels(part);
    let (generator, discriminators) = match &start.from {
        None => (
            fresh_hift::<B>(inputs.config, recipe.seed, device),
            fresh_discriminators::<B>(recipe.seed, channels, device),
        ),
        Some(dir) => {
            let open = |file: &str| TensorStore::open(&[dir.join(file)]).map_err(|e| e.to_string());
            let (gs, ds) = (open(HIFT_FILE)?, open(DISCRIMINATORS_FILE)?);
            let (gb, db) = (Builder::load(&gs, device), Builder::load(&ds, device));
            let g = Hift::new(&gb, c).map_err(|e| format!("{}: {e}", dir.display()))?;
            let d = Discriminators::new(&db, channels)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
            let load = |name: &str| {
                recorder
                    .load(dir.join(name), device)
                    .map_err(|e| format!("{}: {name}: {e}", dir.display()))
            };
            opt_g = opt_g.load_record(load(OPTIMIZER_GENERATOR_FILE)?);
            opt_d = opt_d.load_record(load(OPTIMIZER_DISCRIMINATORS_FILE)?);
            (
                Named {
                    model: g,
                    names: gb.into_names(),
                },
                Named {
                    model: d,
                    names: db.into_names(),
                },
            )
        }
    };
    let vocoder = VocoderPart {
        gan: Gan::new(generator.model, discriminators.model, opt_g, opt_d),
        generator_names: generator.names,
        discriminator_names: discriminators.names,
        data: inputs.data,
        recipe,
        config: c,
        loss_mel: LossMel::new(device),
        eval_mel: LossMel::new(device),
        device,
    };
    let settings = Settings {
        names: &NAMES,
        recipe,
        train: &part.train,
        total_steps: steps::vocoder(part, inputs.data.train.len()).total,
        dir: part_dir,
        faults,
    };
    let (vocoder, report) = driver::train(vocoder, start, &settings)?;
    let trained = Named {
        model: vocoder.gan.hift,
        names: vocoder.generator_names,
    };
    Ok((trained, report))
}
