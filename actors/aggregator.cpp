// aggregator: one per node that runs workers, for the contiguous worker
// ranks [lo, hi) placed there. Upward, in sync mode it sums every canonical
// subtree of ranks that lies wholly on this node and forwards each param
// shard its range of those sums, tagged with the subtree (hierarchical
// reduction: one message per subtree instead of one per worker); in async
// and ssp modes it forwards each worker's gradient as is. Downward, it
// relays parameter slices from the shards to its workers, so each slice
// crosses the network once per node.
#include "actors/faults.hpp"
#include "actors/protocol.hpp"
#include "actors/supervisor.hpp"
#include "actors/update_rule.hpp"
#include "actors/wiring.hpp"

#include "devices/nn/layers.hpp"
#include "runtime/reduce_tree.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

struct aggregator_state {
  job_spec spec;
  update_rule rule; // job.mode
  std::int32_t lo = 0, hi = 0;
  std::vector<worker_handle> workers; // ranks lo..hi-1
  std::vector<param_shard_handle> shards;
  std::vector<std::int64_t> bounds; // shard ranges
  std::map<std::int64_t, std::vector<devices::tensor>>
      pending; // step -> by local rank
  std::map<std::int64_t, std::int32_t> arrived;
  std::vector<std::pair<std::int32_t, std::int32_t>> subtrees; // local ones
  bool wired = false;
  std::vector<params_msg> early;     // parameters that beat our wiring here
  std::vector<grad_msg> early_grads; // gradients that beat it (a replay)
};

void relay(caf::stateful_actor<aggregator_state>* self, params_msg p) {
  auto& st = self->state;
  if (p.target >= 0) {
    if (p.target >= st.lo && p.target < st.hi)
      tell(self, st.workers[static_cast<std::size_t>(p.target - st.lo)],
           std::move(p));
    return;
  }
  for (auto& w : st.workers)
    tell(self, w, p);
}

// The maximal canonical subtrees of [0, n) whose ranks all lie in [a, b).
void local_subtrees(std::int32_t lo, std::int32_t hi, std::int32_t a,
                    std::int32_t b,
                    std::vector<std::pair<std::int32_t, std::int32_t>>& out) {
  if (hi <= a || lo >= b)
    return;
  if (lo >= a && hi <= b) {
    out.emplace_back(lo, hi);
    return;
  }
  const auto mid = static_cast<std::int32_t>(runtime::tree_split(lo, hi));
  local_subtrees(lo, mid, a, b, out);
  local_subtrees(mid, hi, a, b, out);
}

void forward(caf::stateful_actor<aggregator_state>* self, const grad_msg& g,
             const devices::tensor& values, std::int32_t lo, std::int32_t hi) {
  auto& st = self->state;
  for (std::size_t s = 0; s < st.shards.size(); ++s) {
    grad_msg out;
    out.worker = g.worker;
    out.step = g.step;
    out.seq = g.seq;
    out.lo = lo;
    out.hi = hi;
    out.offset = st.bounds[s];
    out.values = values.slice(st.bounds[s], st.bounds[s + 1] - st.bounds[s]);
    send_slices(self, st.shards[s], std::move(out));
  }
}

void reduce_step(caf::stateful_actor<aggregator_state>* self, std::int64_t step,
                 const grad_msg& last) {
  auto& st = self->state;
  auto grads = std::move(st.pending[step]);
  st.pending.erase(step);
  st.arrived.erase(step);
  auto& dev = devices::cpu();
  for (auto [slo, shi] : st.subtrees) {
    auto sum = runtime::tree_reduce<devices::tensor>(
        slo, shi,
        [&](std::int64_t r) {
          return grads[static_cast<std::size_t>(r - st.lo)];
        },
        [&](devices::tensor a, devices::tensor b) {
          // Sum into storage of our own, never into a worker's buffer.
          if (std::any_of(grads.begin(), grads.end(),
                          [&](const devices::tensor& g) {
                            return g.shares_storage(a);
                          })) {
            auto out = devices::tensor::empty({a.numel()});
            dev.add(a, b, out);
            return out;
          }
          dev.axpy(1.0f, b, a);
          return a;
        });
    grad_msg head = last;
    head.worker = slo;
    forward(self, head, sum, slo, shi);
  }
}

caf::behavior aggregator(caf::stateful_actor<aggregator_state>* self,
                         job_spec spec, std::int32_t index, std::int32_t lo,
                         std::int32_t hi) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.rule = update_rule(st.spec);
  st.lo = lo;
  st.hi = hi;
  if (refuse_index(self, role::aggregator, index, st.spec.workers))
    return {};
  if (lo < 0 || hi > st.spec.workers || hi <= lo) {
    self->quit(caf::make_error(
        caf::sec::invalid_argument,
        fmt::format("aggregator:{}: worker ranks [{}, {}) are not ranks of a "
                    "job of {}",
                    index, lo, hi, st.spec.workers)));
    return {};
  }
  const auto total = devices::nn::param_count(
      devices::nn::param_layout(st.spec.model_input(), st.spec.layers));
  for (std::int64_t s = 0; s <= st.spec.partitions; ++s)
    st.bounds.push_back(st.spec.shard_begin(s, total));
  local_subtrees(0, static_cast<std::int32_t>(st.spec.workers), lo, hi,
                 st.subtrees);
  return behavior_of<aggregator_inbox>(
      [=](wire_atom, std::vector<caf::actor> workers,
          std::vector<caf::actor> shards) {
        auto& st = self->state;
        st.workers = handles_to<worker_inbox>(std::move(workers));
        st.shards = handles_to<param_shard_inbox>(std::move(shards));
        st.wired = true;
        // Shards on other nodes may have published version 0 before the
        // coordinator's wiring reached us: no ordering holds across senders.
        for (auto& p : st.early)
          relay(self, std::move(p));
        st.early.clear();
        auto grads = std::move(st.early_grads);
        st.early_grads.clear();
        for (auto& g : grads)
          self->send(self, std::move(g));
      },
      [=](wire_atom) {
        // A barrier: the wiring the asker sent before this is in place, so
        // every parameter relayed from now on reaches the new handles.
        return true;
      },
      [=](grad_msg& g) {
        auto& st = self->state;
        // A worker sends its whole gradient here; anything else (a forged
        // or mis-addressed frame) is dropped.
        if (g.worker < st.lo || g.worker >= st.hi || g.offset != 0 ||
            g.values.numel() != st.bounds.back() || g.step < 0)
          return;
        if (!st.wired) {
          // A worker's replay to a restarted aggregator can beat the
          // coordinator's wiring of it.
          st.early_grads.push_back(std::move(g));
          return;
        }
        if (!st.rule.sums_workers()) {
          forward(self, g, g.values, g.worker, g.worker + 1);
          return;
        }
        auto& slot = st.pending[g.step];
        if (slot.empty())
          slot.resize(static_cast<std::size_t>(st.hi - st.lo));
        auto& cell = slot[static_cast<std::size_t>(g.worker - st.lo)];
        if (cell.defined())
          return; // duplicate
        cell = std::move(g.values);
        if (++st.arrived[g.step] == st.hi - st.lo)
          reduce_step(self, g.step, g);
      },
      [=](params_msg& p) {
        auto& st = self->state;
        if (!st.wired) {
          st.early.push_back(std::move(p));
          return;
        }
        relay(self, std::move(p));
      });
}

} // namespace

void register_aggregator(caf::actor_system_config& cfg) {
  cfg.add_actor_type(name_of(role::aggregator),
                     spawn_with_faults<role::aggregator, aggregator>);
}

void recover_aggregator(supervisor& sup, std::int32_t index,
                        const caf::actor& h) {
  // The shards learn the new handle first: the workers' replays through it
  // are answered through it.
  auto* self = sup.self();
  const auto& t = sup.topo();
  const auto gen = sup.generation();
  wire_aggregator(self, t, static_cast<std::size_t>(index));
  auto left = std::make_shared<std::size_t>(t.param_shards.size());
  for (std::size_t p = 0; p < t.param_shards.size(); ++p) {
    wire_shard(self, t, p);
    tell(self, param_shard_at(t, p), republish_atom::value, h);
    ask(self, param_shard_at(t, p), std::chrono::seconds(30), wire_atom::value)
        .then(
            [=, &sup, hold = sup.recovery_hold()](bool) {
              if (sup.stale(gen) || --*left > 0)
                return;
              const auto& t = sup.topo();
              for (std::size_t r = 0; r < t.workers.size(); ++r)
                if (t.aggregator_of_worker[r] == index)
                  wire_worker(sup.self(), t, r);
            },
            [=, &sup, hold = sup.recovery_hold()](caf::error& err) {
              if (sup.stale(gen))
                return;
              // A shard that does not answer fails on its own; a later
              // recovery rewires the workers.
              sup.job().info(fmt::format(
                  "recovering aggregator:{}: a param shard did not confirm "
                  "its wiring: {}",
                  index, sup.self()->system().render(err)));
            });
  }
}

} // namespace troupe::actors
