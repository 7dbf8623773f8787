#pragma once
/// \file Custom stages: a user's own actor types, registered by name from
/// C++ and placed by pipeline files (`[[stage]]`, `[controller]`) and the
/// graph API like the built-in roles.
///
/// - A **data stage** sits between a data shard and its workers: every
///   batch passes through it on its way to a worker (augmentation,
///   normalization, filtering of values). Each data shard gets its own
///   instance, an actor named "stage:N" that runs on any node and is
///   supervised, restarted and killed like the built-ins.
/// - A **controller** is fed each epoch's figures (and progress between
///   them) and may stop the job (keeping that epoch's parameters), scale
///   the learning rate or ask for the epoch's model to be kept. It runs
///   in the coordinator, in the driver's process. In sync mode its decision
///   on epoch e takes effect at the first step of epoch e + 2 on every
///   param shard, which waits for it there, so a sync run stays
///   bit-identical whatever the placement, timing or failures; in
///   async/ssp mode a decision takes effect when it reaches each shard.
///
/// Replay: a data stage's output must be a function of the batch and its
/// batch_context (use its draws for randomness), or, for one that keeps
/// state (data_stage::keeps_state), of the batches of its worker's epoch so
/// far: so a restarted stage, or one on another node, gives exactly the
/// batches the lost one would have. A controller is fed each epoch once: epochs
/// redone after a rollback are not reported again, and its decisions stay.
///
/// Registration happens in the processes that run the stages: in a program
/// of its own before it runs a job, or in a plugin (a shared library with a
/// `troupe_register_stages` function, loaded by `troupe run --plugin` and
/// `troupe node --plugin`), which may register custom layers too
/// (devices::nn::register_layer). Light: no CAF.
#include "devices/nn/custom.hpp"
#include "devices/random.hpp"
#include "devices/tensor.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace troupe::stages {

/// A stage's settings (devices/nn/custom.hpp): the keys of its pipeline
/// table other than `type`, read with integer, number, flag and text.
using params = devices::nn::settings;

/// What a data stage is made for.
struct sample_info {
  /// Per-sample shape of the features (data.shape, e.g. {1, 28, 28}; {f}
  /// for flat rows).
  std::vector<std::int64_t> shape;
  std::int64_t features = 0; ///< values per sample
  std::int64_t classes = 0;  ///< 0: regression targets
};

/// Which batch a stage is given: everything its randomness may depend on.
struct batch_context {
  std::uint64_t seed = 0; ///< job.seed
  std::int64_t epoch = 0; ///< 0-based
  std::int64_t step = 0;  ///< within the epoch, 0-based
  std::int32_t worker = 0;
  std::int32_t shard = 0;    ///< the data shard the batch comes from
  std::int32_t position = 0; ///< the stage's place in the chain, from 0

  /// A counter-based stream for this batch: bits(i) is the same number for
  /// the same (seed, epoch, step, worker, position, i), wherever and
  /// however often it is drawn.
  std::uint64_t bits(std::uint64_t i) const;
  /// Uniform in [0, 1), 24 bits.
  float uniform(std::uint64_t i) const;
  /// Uniform integer in [0, n), n > 0.
  std::uint64_t below(std::uint64_t i, std::uint64_t n) const;
};

/// A user's data stage.
class data_stage {
public:
  virtual ~data_stage() = default;
  /// Transforms one batch in place: x is [n, features], y is [n] (class
  /// indices) or [n, outputs]. Shapes must stay; throwing fails the stage
  /// (it is restarted like any failed actor, then escalates).
  virtual void transform(devices::tensor& x, devices::tensor& y,
                         const batch_context& c) = 0;
  /// True for a stage whose output depends on the batches before (running
  /// statistics, the previous batch), which it keeps in its members. Such
  /// a stage gets an instance per worker and epoch, made fresh at the
  /// epoch's first step and fed that worker's batches of the epoch in step
  /// order, each exactly once. When a batch must be given again (a
  /// restarted worker, stage or data shard, a rollback, --resume), a fresh
  /// instance is fed the epoch's batches again from its first step: the
  /// state is replayed, never saved, and a sync run stays bit-identical.
  /// The factory is called for each instance. Asked once, of the first.
  virtual bool keeps_state() const { return false; }
};

/// Makes a data stage. It is called once with an empty sample_info
/// (features 0) when a pipeline is read, to check the settings (so errors
/// name the file, line and key), then with the data's.
using data_stage_factory = std::function<std::unique_ptr<data_stage>(
    const params&, const sample_info&)>;

/// A user's metric of the test set (`[[metric]]`), computed by the
/// evaluator after each epoch alongside the test loss and accuracy. A fresh
/// one is made for each evaluation; chunks come in the test set's order.
class metric {
public:
  virtual ~metric() = default;
  /// One chunk of n samples: `out` [n, outputs] (logits for
  /// classification), `target` [n] class indices or [n, outputs] values.
  virtual void add(const float* out, const float* target, std::int64_t n,
                   std::int64_t outputs) = 0;
  /// The figure over every chunk added.
  virtual double value() const = 0;
};

/// Makes a metric; called once with an empty sample_info when a pipeline
/// is read, then with the data's (classes > 0: classification).
using metric_factory =
    std::function<std::unique_ptr<metric>(const params&, const sample_info&)>;

/// What a controller is told after each epoch (trained, and evaluated when
/// the job has test data).
struct epoch_figures {
  std::int64_t epoch = 0; ///< 1-based
  std::int64_t epochs = 0;
  double train_loss = 0;
  bool evaluated = false;
  double test_loss = 0;
  double test_accuracy = -1; ///< -1: regression or not evaluated
  /// The lr of the epoch's last step (schedule and every scale so far).
  double lr = 0;
  /// The product of the scales decided so far.
  double lr_scale = 1;
  /// The [[metric]] figures of the evaluation, by name.
  std::map<std::string, double> metrics;
};

/// What a controller is told as training goes: each time the slowest
/// worker's step count rises (about 20 times an epoch).
struct step_figures {
  std::int64_t step = 0;  ///< steps done by the slowest worker
  std::int64_t steps = 0; ///< of the job
  std::int64_t epoch = 0; ///< 1-based: the epoch the next step is in
  double loss = 0;        ///< recent mean train loss
  double lr = 0;          ///< the lr of the step
};

/// What a controller decides after an epoch (or a step: see on_step).
struct decision {
  bool stop = false;   ///< end the job; the result is this epoch's
  double lr_scale = 1; ///< multiply the lr by this from epoch + 2 on
  /// Keep this epoch's model: `troupe run --save PATH.onnx` writes it to
  /// PATH.epoch-E.onnx (run_observer::on_checkpoint). It is a model to
  /// take away, like Keras's ModelCheckpoint, not a resumable snapshot
  /// (those are `--checkpoint DIR`'s, every supervision.snapshot_every).
  bool checkpoint = false;
  std::string reason; ///< logged with the decision
};

/// A user's controller.
class controller {
public:
  virtual ~controller() = default;
  virtual decision on_epoch(const epoch_figures& f) = 0;
  /// Progress between epochs (a diverging loss, a time budget). A stop or
  /// checkpoint asked here is the decision of the epoch the step is in,
  /// applied when that epoch is judged: the job stops after it, keeping
  /// its parameters. lr_scale must stay 1 (lr changes are epoch
  /// decisions, so that sync runs stay bit-identical). The default asks
  /// nothing.
  virtual decision on_step(const step_figures&) { return {}; }
};

using controller_factory =
    std::function<std::unique_ptr<controller>(const params&)>;

/// Registers a type by name (letters, digits, '_', '-'; at most 64).
/// Throws std::invalid_argument for a bad or taken name.
void register_data_stage(const std::string& type, data_stage_factory make);
void register_controller(const std::string& type, controller_factory make);
void register_metric(const std::string& type, metric_factory make);

/// The types registered in this process, sorted.
std::vector<std::string> data_stage_types();
std::vector<std::string> controller_types();
std::vector<std::string> metric_types();
bool has_data_stage(const std::string& type);
bool has_controller(const std::string& type);
bool has_metric(const std::string& type);

/// Makes a registered stage. Throws std::invalid_argument naming
/// p.where() for an unknown type (with the registered ones and a hint
/// about --plugin), bad settings, or settings the stage did not read.
std::unique_ptr<data_stage>
make_data_stage(const std::string& type, const params& p, const sample_info& s);
std::unique_ptr<controller> make_controller(const std::string& type,
                                            const params& p);
std::unique_ptr<metric> make_metric(const std::string& type, const params& p,
                                    const sample_info& s);

/// Loads a plugin: a shared library whose
/// `extern "C" void troupe_register_stages()` registers its types. Each
/// path is loaded once per process. Throws std::runtime_error naming the
/// path and what is wrong (no such file, not a library, no entry point,
/// the entry point threw).
void load_plugin(const std::string& path);
/// The plugins loaded so far, in order (what local nodes are started with).
std::vector<std::string> loaded_plugins();

} // namespace troupe::stages

/// The entry point a plugin defines.
extern "C" void troupe_register_stages();
