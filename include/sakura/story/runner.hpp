// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Runner: executes a story (upstream's train_story): `train`, `test` and `train_hybrid`
/// (interleave and sum), with weight progression at epoch ends (or on tests), segmental tests that
/// log losses and dump latents, checkpoints, and bit-identical resumption from a checkpoint.
///
/// Example:
///   sakura::story::Session session("config.json");
///   sakura::story::Runner runner(session);
///   runner.run();                       // or runner.resume("log/checkpoint__tick_500.ckpt")
///
/// On N ranks (the session's comm) every rank runs the same story on its rows of each batch and
/// chunk; only rank 0 writes (logs, latents, checkpoints) and reports (progress, notes).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <filesystem>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "sakura/data/loader.hpp"
#include "sakura/data/sampling.hpp"
#include "sakura/io/checkpoint.hpp"
#include "sakura/story/feed.hpp"
#include "sakura/story/logs.hpp"
#include "sakura/story/progress.hpp"
#include "sakura/story/ranks.hpp"
#include "sakura/story/session.hpp"

namespace sakura::story {

struct RunnerOptions {
  /// Stop (as if interrupted) once this many training ticks ran in this process; -1: never.
  std::int64_t max_ticks = -1;
  Progress* progress = nullptr;
  std::ostream* log = nullptr;  ///< notes (checkpoints written, warnings)
  bool verbose = false;
  /// Tests evaluate their split in chunks of this many cells (upstream evaluates the whole split at
  /// once; losses are the cell-weighted mean over chunks, exact for a single chunk).
  Index eval_chunk = 2048;
  /// Set to a signal number (by a SIGINT/SIGTERM handler) to stop at the next tick or evaluation
  /// chunk: the runner throws Interrupted, files being written are removed, checkpoints stay.
  const std::atomic<int>* interrupt = nullptr;
  /// Also receives every loss-log scalar (sakura-train's TensorBoard writer), when set.
  ScalarSink* scalars = nullptr;
};

/// The run was stopped through RunnerOptions::interrupt; the message names the newest checkpoint.
class Interrupted : public Error {
 public:
  Interrupted(int signal, const std::string& what) : Error(what), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

class Runner {
 public:
  Runner(Session& s, RunnerOptions o = {})
      : s_(s), ctl_(s.controller()), opt_(std::move(o)), comm_(s.comm()), gather_(comm_),
        feed_(s.data(), comm_.rank(), comm_.size()) {
    detail::require(opt_.eval_chunk > 0, "eval chunk size must be positive");
    if (!writer()) opt_.progress = nullptr, opt_.log = nullptr, opt_.scalars = nullptr;
    log_.set_sink(opt_.scalars);
  }

  /// Runs the whole story from its first item.
  void run() {
    prepare_outputs();
    if (writer()) log_.open(loss_log_path());
    begin_scalars(0);  // losses.tsv starts anew, so does what TensorBoard shows
    for (std::size_t i = 0; i < story().size() && !stopped_; ++i) run_item(i, nullptr);
    log_.close();
  }

  /// Restores a checkpoint and continues the story exactly where it was written. All or nothing:
  /// the file is checked against the model, the story, the data and the loss log before the
  /// controller or any file changes.
  /// On N ranks rank 0 reads the file and shares it; a checkpoint of a run on another number of
  /// ranks continues the same computation (a warning: split sums round differently).
  void resume(const std::string& path) {
    const io::Checkpoint ck = read_checkpoint_on_ranks(comm_, path);
    io::check_restore(ctl_, ck, path);
    check_position(ck, path);
    io::restore(ctl_, ck, path);
    check_state_agrees(comm_, ctl_, "the state restored from checkpoint '" + path + "'");
    last_checkpoint_ = path;
    if (ck.config != s_.config_text()) note("warning: the config differs from the one checkpoint '" + path +
                                            "' was written with; continuing with the current one");
    if (ck.ranks != comm_.size())
      note("warning: checkpoint '" + path + "' was written by a run on " + std::to_string(ck.ranks) + " rank" +
           (ck.ranks == 1 ? "" : "s") + ", resumed on " + std::to_string(comm_.size()) +
           ": the run continues the same computation, but sums split across ranks round differently, so it is not "
           "bit-identical to an uninterrupted run on " + std::to_string(ck.ranks));
    prepare_outputs();
    if (writer()) log_.open_resume(loss_log_path(), ck.story.log_bytes);
    begin_scalars(ctl_.ticks());  // lines after the checkpoint were cut from losses.tsv
    std::size_t i = static_cast<std::size_t>(ck.story.item);
    if (!ck.story.item_done) run_item(i++, &ck);
    else ++i;
    for (; i < story().size() && !stopped_; ++i) run_item(i, nullptr);
    log_.close();
  }

  /// Upstream's -i/-y: loads a checkpoint's model and runs test items.
  void inference(const std::string& path, const std::vector<TestConfig>& tests) {
    const io::Checkpoint ck = read_checkpoint_on_ranks(comm_, path);
    io::restore(ctl_, ck, path);
    check_state_agrees(comm_, ctl_, "the state restored from checkpoint '" + path + "'");
    prepare_outputs();
    if (writer()) log_.open_append(loss_log_path());
    begin_scalars(-1);
    for (const auto& t : tests) run_test(t);
    log_.close();
  }

  /// Evaluates `rows` in chunks; f(chunk_rows) is called after each chunk's eval(), while
  /// controller().forward() holds its tensors (on N ranks: this rank's rows of the chunk; outputs()
  /// gathers a whole chunk's). Backed data: the next chunk is read meanwhile.
  template <class F>
  void evaluate(std::span<const Index> rows, const EvalOptions& eo, F&& f) {
    evaluate_rows(rows, eo, f);
  }
  /// The same over a split's cells (ascending).
  template <class F>
  void evaluate(const data::RowSet& rows, const EvalOptions& eo, F&& f) {
    evaluate_rows(rows, eo, f);
  }

  /// Inside evaluate()'s f: v's rows of the whole chunk, in cell order, on rank 0, the writer (a
  /// collective on N ranks: every rank asks for the same variables, each in its own slot, in the
  /// same order; the other ranks get their own rows; on one rank, the controller's view).
  MatrixRef<const float> outputs(Var v, std::size_t slot = 0) { return gather_.gather(slot, ctl_.view(v), chunk_cells_); }

  bool stopped() const { return stopped_; }
  std::int64_t ticks_run() const { return ticks_run_; }
  std::string loss_log_path() const { return join(s_.setup().log_path, "losses.tsv"); }
  /// Rank 0 writes every file (on one rank: that rank).
  bool writer() const { return comm_.rank() == 0; }
  /// Files written so far (latent CSVs and checkpoints), in order; on rank 0 only.
  const std::vector<std::string>& written() const { return written_; }

 private:
  const std::vector<ActionConfig>& story() const { return s_.setup().story; }

  template <class Rows, class F>
  void evaluate_rows(const Rows& rows, const EvalOptions& eo, F& f) {
    const Index cap = std::min<Index>(opt_.eval_chunk, s_.data().n_cells());
    feed_.chunks(rows, cap, [&](std::span<const Index> chunk, Batch<float>& batch) {
      check_interrupt();
      ctl_.eval(batch, eo);
      chunk_cells_ = static_cast<Index>(chunk.size());
      f(chunk);
    });
  }

  static std::string join(const std::string& dir, const std::string& file) {
    return (std::filesystem::path(dir) / file).string();
  }
  void begin_scalars(std::int64_t purge_step) {
    if (opt_.scalars) opt_.scalars->begin(purge_step);
  }
  void note(const std::string& m) {
    if (opt_.log) *opt_.log << "sakura-train: " << m << "\n";
  }

  /// Creates log_path; writes the configs and splits when the config asks (dump_configs,
  /// dump_splits; splits as splits.csv, since upstream's pickle is Python-only).
  void prepare_outputs() {
    if (!writer()) return;
    const Setup& st = s_.setup();
    std::error_code ec;
    std::filesystem::create_directories(st.log_path, ec);
    detail::require(!ec, "cannot create log_path '", st.log_path, "': ", ec.message());
    remove_stale_temps();
    auto on = [&](const char* k) {  // validated by load_setup with the one boolean rule
      return std::string_view(k) == "dump_configs" ? st.dump_configs : st.dump_splits;
    };
    if (on("dump_configs")) {
      Json gene_meta = Json::object();
      Json excluded = Json::array();
      for (auto it = st.signature_config.begin(); it != st.signature_config.end(); ++it) {
        gene_meta[it.key()] = Json{{"gene_list", it.value().value("signature_list", Json::array())},
                                   {"pre_procedure", it.value().value("pre_procedure", Json::array())},
                                   {"post_procedure", it.value().value("post_procedure", Json::array())}};
        if (config::detail::opt_bool(it.value(), "exclude_from_input", "signature_config." + it.key()))
          for (const auto& g : it.value()["signature_list"]) excluded.push_back(g);
      }
      gene_meta["all"] = excluded.empty()
                             ? Json{{"gene_list", "*"}, {"pre_procedure", Json::array()},
                                    {"post_procedure", Json::array({Json{{"type", "ToTensor"}}})}}
                             : Json{{"gene_list", "-"}, {"exclude_list", excluded}, {"pre_procedure", Json::array()},
                                    {"post_procedure", Json::array({Json{{"type", "ToTensor"}}})}};
      write_json(join(st.log_path, "pheno_config.json"), st.pheno_meta);
      write_json(join(st.log_path, "gene_meta.json"), gene_meta);
      write_json(join(st.log_path, "signature_config.json"), st.signature_config);
    }
    if (on("dump_splits")) {
      const std::string p = join(st.log_path, "splits.csv");
      std::vector<std::string> header{"cell"};
      for (const auto& [name, rows] : s_.splits().all()) header.push_back(name);
      CsvWriter w(p, header);
      std::vector<Index> cells;
      for (Index c0 = 0; c0 < s_.data().n_cells(); c0 += 4096) {  // names a block at a time (backed: from the file)
        cells.resize(static_cast<std::size_t>(std::min<Index>(4096, s_.data().n_cells() - c0)));
        for (std::size_t i = 0; i < cells.size(); ++i) cells[i] = c0 + static_cast<Index>(i);
        feed_.names(cells, cell_names_);
        for (std::size_t i = 0; i < cells.size(); ++i) {
          w.begin_row(cell_names_[i]);
          for (const auto& [name, rows] : s_.splits().all()) w.value(rows.contains(cells[i]) ? 1.0f : 0.0f);
          w.end_row();
        }
      }
      w.close();
    }
  }
  static void write_json(const std::string& path, const Json& j) {
    io::AtomicFile f(path);
    f.out().put(j.dump(2));
    f.out().put('\n');
    f.commit();
  }

  /// Removes the temp files a killed run left behind (a checkpoint, CSV or JSON being written:
  /// io::temp_path names) in log_path and next to the checkpoints, saying so under -v.
  void remove_stale_temps() {
    namespace fs = std::filesystem;
    std::vector<std::pair<fs::path, std::string>> places{{fs::path(s_.setup().log_path), ""}};  // folder, prefix
    for (const auto& a : story())
      if (a.kind != ActionConfig::Kind::Test) {
        const fs::path p(s_.setup().log_path + a.checkpoint_prefix);  // upstream joins them as strings
        places.emplace_back(p.parent_path().empty() ? fs::path(".") : p.parent_path(), p.filename().string());
      }
    for (const auto& [dir, prefix] : places) {
      std::error_code ec;
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        const bool ours = name.ends_with(".ckpt.tmp") || (prefix.empty() && (name.ends_with(".csv.tmp") ||
                                                                               name.ends_with(".json.tmp")));
        if (!ours || !name.starts_with(prefix) || !it->is_regular_file(ec)) continue;
        std::error_code rm;
        if (fs::remove(it->path(), rm) && opt_.verbose)
          note("removed '" + it->path().string() + "', a temporary file left by an interrupted run");
      }
    }
  }

  /// Per-action, per-split sampler seed (splitmix64 of rnd_seed, item and split).
  std::uint64_t seed_for(std::size_t item, std::size_t split) const {
    std::uint64_t z = s_.setup().seed + 0x9E3779B97F4A7C15ull * (item * 1024 + split + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  void run_item(std::size_t i, const io::Checkpoint* ck) {
    const ActionConfig& a = story()[i];
    if (opt_.verbose) note(a.where + (a.remark.empty() ? "" : " (" + a.remark + ")"));
    switch (a.kind) {
      case ActionConfig::Kind::Train: train_action(i, a, ck); break;
      case ActionConfig::Kind::Test: run_test(a.test); break;
      case ActionConfig::Kind::TrainHybrid: hybrid_action(i, a, ck); break;
    }
  }

  // ---------------------------------------------------------------- shared step machinery
  /// The splits a train (one) or train_hybrid item draws batches from.
  static std::span<const SplitConfig> action_splits(const ActionConfig& a) {
    return a.kind == ActionConfig::Kind::Train ? std::span<const SplitConfig>(&a.train, 1)
                                               : std::span<const SplitConfig>(a.splits);
  }

  /// An item's samplers as a fresh run starts them (seeded per item and split).
  std::vector<data::Sampler> make_samplers(std::size_t item) const {
    const ActionConfig& a = story()[item];
    std::vector<data::Sampler> out;
    std::size_t k = 0;
    for (const SplitConfig& sc : action_splits(a)) {
      const std::string where = a.where + (sc.key == "train" ? "" : ".split_configs." + sc.key);
      const auto& rows = s_.splits().rows(sc.use_split);
      detail::require(!rows.empty(), where, ": split '", sc.use_split, "' has no cells");
      const bool drop_last = a.kind == ActionConfig::Kind::TrainHybrid && a.drop_last;
      out.emplace_back(rows, sc.batch_size, seed_for(item, k++), drop_last, s_.setup().dataset.sampling);
    }
    return out;
  }

  /// An upper bound of the controller ticks from the start of story item `from` to the story's end
  /// (training steps, and a tick per logged test after any of them), saturating at INT64_MAX.
  std::int64_t ticks_bound(std::size_t from) const {
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    auto mul = [](std::int64_t a, std::int64_t b) {
      std::int64_t r = 0;
      return __builtin_mul_overflow(a, b, &r) ? kMax : r;
    };
    auto add = [](std::int64_t a, std::int64_t b) {
      std::int64_t r = 0;
      return __builtin_add_overflow(a, b, &r) ? kMax : r;
    };
    std::int64_t total = 0;
    for (std::size_t i = from; i < story().size(); ++i) {
      const ActionConfig& a = story()[i];
      if (a.kind == ActionConfig::Kind::Test) {
        total = add(total, 1);
        continue;
      }
      std::int64_t steps = 0;
      if (a.kind == ActionConfig::Kind::Train) {
        const auto cells = static_cast<std::int64_t>(s_.splits().rows(a.train.use_split).size());
        steps = mul(a.epochs, (cells + a.train.batch_size - 1) / a.train.batch_size);
      } else {
        steps = mul(a.ticks, a.mode == ActionConfig::Mode::Sum ? static_cast<std::int64_t>(a.splits.size()) : 1);
      }
      const auto tests = static_cast<std::int64_t>(a.tests.size());
      total = add(total, add(mul(steps, add(tests, 1)), add(mul(a.epochs, tests), tests)));
    }
    return total;
  }

  /// Samplers, batches and options of an item; with a checkpoint (checked by check_position), its samplers' state.
  void setup_splits(std::size_t item, const io::Checkpoint* ck) {
    const auto splits = action_splits(story()[item]);
    samplers_ = make_samplers(item);
    names_.clear();
    options_.clear();
    for (std::size_t k = 0; k < splits.size(); ++k) {
      const SplitConfig& sc = splits[k];
      names_.push_back(sc.key);
      options_.push_back(sc.options(story()[item].save_raw));
      if (ck) samplers_[k].set_state(ck->samplers.at(k).state, "checkpoint sampler '" + names_[k] + "'");
    }
    feed_.reset(samplers_);
  }

  /// Checks a checkpoint's story position, counters and samplers against this config and data,
  /// and that the loss log can be cut back to the length it records; changes nothing.
  /// The counters follow from the story: a tick ends at most one epoch (a sum tick: one per split,
  /// and it ticks once per split), and a term advances only when the controller's epoch does.
  void check_position(const io::Checkpoint& ck, const std::string& path) const {
    using io::checkpoint_field;
    using detail::require;
    const io::StoryPosition& p = ck.story;
    const std::string either = std::string(io::kCheckpointMismatch) + "; if they are, " + io::kCheckpointDamaged;
    auto at = [&](const char* field) { return checkpoint_field(path, ck.records.story, "STRY", field); };
    auto ctrl = [&](const char* field) { return checkpoint_field(path, ck.records.ctrl, "CTRL", field); };
    require(p.item < static_cast<std::int64_t>(story().size()), at("item"), ": story item ", p.item,
            " does not exist (the story has ", story().size(), " item(s)); ", io::kCheckpointMismatch);
    const std::size_t item = static_cast<std::size_t>(p.item);
    const ActionConfig& a = story()[item];
    require(a.kind != ActionConfig::Kind::Test, at("item"), ": ", a.where,
            " is a test action, which writes no checkpoints; ", either);
    require(ck.epoch <= ck.tick, ctrl("epoch"), ": epoch ", ck.epoch, " is beyond tick ", ck.tick,
            " (a story ends at most one epoch per tick); ", io::kCheckpointDamaged);
    for (std::size_t k = 0; k < ck.terms.size(); ++k)
      require(ck.terms[k].epoch <= ck.epoch,
              checkpoint_field(path, ck.records.terms, "TERM", "terms[" + std::to_string(k) + "].epoch"), ": ",
              ck.terms[k].epoch, " is beyond the controller's epoch ", ck.epoch, "; ", io::kCheckpointDamaged);
    require(p.tick <= ck.tick, at("tick"), ": tick ", p.tick, " of the item is beyond the controller's tick ",
            ck.tick, "; ", io::kCheckpointDamaged);
    require(p.epoch <= ck.epoch, at("epoch"), ": epoch ", p.epoch, " of the item is beyond the controller's epoch ",
            ck.epoch, "; ", io::kCheckpointDamaged);
    const std::int64_t left = ticks_bound(item);
    require(left <= std::numeric_limits<int>::max() - ck.tick, ctrl("tick"), ": tick ", ck.tick, " and up to ", left,
            " more ticks in the rest of the story overflow the counter (", std::numeric_limits<int>::max(), "); ",
            either);

    // where each sampler must be: (passes begun, batches taken in the pass), from the item's ticks
    std::vector<data::Sampler> samplers = make_samplers(item);
    const std::size_t n = samplers.size();
    std::vector<std::pair<std::int64_t, std::int64_t>> expect(n);
    const std::int64_t t = p.tick;
    if (a.kind == ActionConfig::Kind::Train) {
      const std::int64_t per = samplers[0].batches();
      require(p.item_done ? p.epoch == a.epochs : p.epoch < a.epochs, at("epoch"), ": ", p.epoch, " epochs done",
              p.item_done ? " (the item marked done)" : "", " but ", a.where, " has ", a.epochs, "; ", either);
      require(p.cursor == 0, at("cursor"), ": ", p.cursor, " (a train action has no cursor: 0); ",
              io::kCheckpointDamaged);
      const std::int64_t passes = p.item_done ? p.epoch : p.epoch + 1;
      std::int64_t before = 0;  // ticks in the passes completed before this one
      const bool fits = passes >= 1 && !__builtin_mul_overflow(passes - 1, per, &before) && t >= before &&
                        t - before <= per && (!p.item_done || t - before == per);
      require(fits, at("tick"), ": tick ", t, " does not fit ", p.epoch, " epochs done of ", per,
              " batches each in ", a.where, "; ", either);
      expect[0] = {passes, t - before};
    } else {
      require(t <= a.ticks, at("tick"), ": tick ", t, " is beyond the ", a.ticks, " ticks of ", a.where, "; ", either);
      require(p.epoch == 0 && !p.item_done, at(p.epoch ? "epoch" : "item_done"),
              ": a train_hybrid action keeps neither epochs nor a done mark; ", io::kCheckpointDamaged);
      const bool interleave = a.mode == ActionConfig::Mode::Interleave;
      const auto ns = static_cast<std::int64_t>(n);
      const std::int64_t cursor = interleave && t > 0 ? (t - 1) % ns + 1 : 0;  // reset to 0 on the next tick
      require(p.cursor == cursor, at("cursor"), ": cursor ", p.cursor, " but tick ", t, " of ", a.where, " (",
              interleave ? "interleave" : "sum", " over ", n, " splits) leaves it at ", cursor, "; ", either);
      for (std::size_t k = 0; k < n; ++k) {
        const std::int64_t m = interleave ? t / ns + (static_cast<std::int64_t>(k) < t % ns) : t;  // batches taken
        const std::int64_t per = samplers[k].batches();
        const std::int64_t passes = m == 0 ? 1 : (m - 1) / per + 1;  // the first pass begins up front
        expect[k] = {passes, m - (passes - 1) * per};
      }
    }
    require(ck.samplers.size() == n,
            checkpoint_field(path, ck.samplers.empty() ? -1 : ck.samplers[0].record, "SAMP", ""), ": ",
            ck.samplers.size(), " samplers saved but ", a.where, " draws from ", n, " splits; ", either);
    const auto splits = action_splits(a);
    for (std::size_t k = 0; k < n; ++k) {
      const io::SamplerRecord& r = ck.samplers[k];
      const std::string what = checkpoint_field(path, r.record, "SAMP", "");
      require(r.name == splits[k].key, what, ", field name: sampler ", k, " is '", r.name, "' but ", a.where,
              "'s split ", k, " is '", splits[k].key, "'; ", either);
      samplers[k].set_state(r.state, what + " (split '" + r.name + "')", either);
      require(r.state.epochs == expect[k].first && r.state.position == expect[k].second, what, " (split '", r.name,
              "'), field ", r.state.epochs != expect[k].first ? "epochs" : "position", ": pass ", r.state.epochs,
              " with ", r.state.position, " batches taken, but tick ", t, " of ", a.where, " means pass ",
              expect[k].first, " with ", expect[k].second, " (", samplers[k].batches(), " batches per pass); ", either);
    }
    const std::string log = writer() ? LossLog::resume_problem(loss_log_path(), p.log_bytes) : std::string();
    require(log.empty(), at("log_bytes"), ": ", log,
            "; keep the run's losses.tsv with its checkpoints (a resume cuts it back to the checkpoint's length)");
  }

  /// One training tick on split k: batch, train, log. Returns the total loss.
  double step(std::size_t k, const ActionConfig& a) {
    const LossRecord& rec = ctl_.train(feed_.next(k, samplers_[k]), options_[k]);
    if (a.make_logs) log_.write(rec, ctl_.ticks(), a.log_prefix, a.log_groups);
    return rec.total;
  }

  void progress_epoch(const TrainOptions& o) { ctl_.next_epoch(o.scope); }

  void save_checkpoint(std::size_t item, const ActionConfig& a, std::int64_t tick, std::int64_t cursor,
                       std::int64_t epoch, bool done) {
    const std::string path = s_.setup().log_path + a.checkpoint_prefix + "_tick_" + std::to_string(tick) + ".ckpt";
    last_checkpoint_ = path;
    ctl_.sync_to_host();    // collective: a sharded optimizer's chunks gathered on every rank
    if (!writer()) return;  // every rank's state is now rank 0's
    io::Checkpoint ck = io::capture(ctl_);
    ck.ranks = comm_.size();
    ck.config = s_.config_text();
    for (std::size_t k = 0; k < samplers_.size(); ++k) ck.samplers.push_back({names_[k], samplers_[k].state()});
    log_.sync();  // the length recorded here is on the disk before the checkpoint is
    ck.story = {static_cast<std::int64_t>(item), tick, cursor, epoch, done, log_.bytes()};
    io::write_checkpoint(path, ck);
    written_.push_back(path);
    if (opt_.verbose) note("checkpoint " + path);
  }

  /// Counts a tick toward max_ticks; true when the run must stop now.
  bool count_tick() {
    check_interrupt();
    ++ticks_run_;
    if (opt_.max_ticks >= 0 && ticks_run_ >= opt_.max_ticks) stopped_ = true;
    return stopped_;
  }

  /// Throws Interrupted when RunnerOptions::interrupt is set (the loss log flushed first, if it can be);
  /// on N ranks when any rank's is, on every rank at the same tick.
  void check_interrupt() {
    const int sig =
        agreed_signal(comm_, opt_.interrupt ? opt_.interrupt->load(std::memory_order_relaxed) : 0, signals_);
    if (sig == 0) return;
    try {
      log_.flush();
    } catch (const Error&) {  // the interrupt is the news; lines after the last checkpoint are dropped on resume
    }
    throw Interrupted(sig, "interrupted by signal " + std::to_string(sig) + " after tick " +
                               std::to_string(ctl_.ticks()) + "; " +
                               (last_checkpoint_.empty()
                                    ? std::string("no checkpoint was written yet: the run must start again")
                                    : "continue from checkpoint '" + last_checkpoint_ + "' (sakura-train -r " +
                                          last_checkpoint_ + ")"));
  }

  // ---------------------------------------------------------------- train
  void train_action(std::size_t item, const ActionConfig& a, const io::Checkpoint* ck) {
    setup_splits(item, ck);
    std::int64_t tick = ck ? ck->story.tick : 0, epoch = ck ? ck->story.epoch : 0;
    bool resumed_pass = ck != nullptr;
    Progress* pr = opt_.progress;
    if (pr) pr->begin(a.where + " train", a.epochs * samplers_[0].batches(), tick);
    double loss = 0;
    while (epoch < a.epochs) {
      if (!resumed_pass) samplers_[0].begin_epoch();
      resumed_pass = false;
      while (!samplers_[0].exhausted()) {
        loss = step(0, a);
        if (a.test_on_segment && (tick + 1) % a.test_segment == 0) run_tests(a);
        ctl_.tick();
        ++tick;
        if (pr) pr->update(tick, loss);
        if (a.checkpoint_on_segment && tick % a.checkpoint_segment == 0) save_checkpoint(item, a, tick, 0, epoch, false);
        if (count_tick()) return end_progress();
      }
      progress_epoch(options_[0]);
      ++epoch;
      if (a.test_every_epoch) run_tests(a);
    }
    if (a.test_on_segment && !a.test_every_epoch) run_tests(a);
    if (a.checkpoint_on_segment) save_checkpoint(item, a, tick, 0, epoch, true);
    end_progress();
  }

  void end_progress() {
    if (opt_.progress) opt_.progress->end();
  }

  // ---------------------------------------------------------------- train_hybrid
  void hybrid_action(std::size_t item, const ActionConfig& a, const io::Checkpoint* ck) {
    setup_splits(item, ck);
    const std::size_t n = a.splits.size();
    std::int64_t tick = ck ? ck->story.tick : 0, cursor = ck ? ck->story.cursor : 0;
    if (!ck)
      for (auto& s : samplers_) s.begin_epoch();  // upstream draws every split's first pass up front
    Progress* pr = opt_.progress;
    if (pr) pr->begin(a.where + (a.mode == ActionConfig::Mode::Sum ? " train_hybrid(sum)" : " train_hybrid"), a.ticks, tick);
    while (tick < a.ticks) {
      double loss = 0;
      if (a.mode == ActionConfig::Mode::Interleave) {
        if (cursor >= static_cast<std::int64_t>(n)) cursor = 0;
        const std::size_t k = static_cast<std::size_t>(cursor);
        epoch_end(a, k);
        loss = step(k, a);
        ctl_.tick();
        ++cursor;
      } else {
        loss = sum_tick(a);
      }
      ++tick;
      if (pr) pr->update(tick, loss);
      if (a.perform_test && tick % a.test_segment == 0) {
        run_tests(a);
        if (a.prog == ActionConfig::Prog::OnTest) {
          ctl_.next_epoch(a.prog_on_test.scope());
        }
      }
      if (a.perform_checkpoint && tick % a.checkpoint_segment == 0) save_checkpoint(item, a, tick, cursor, 0, false);
      if (count_tick()) return end_progress();
    }
    end_progress();
  }

  /// A split's pass ran out: start the next and, in epoch_end mode, advance its terms' weights.
  void epoch_end(const ActionConfig& a, std::size_t k) {
    if (!samplers_[k].exhausted()) return;
    samplers_[k].begin_epoch();
    if (a.prog == ActionConfig::Prog::EpochEnd) progress_epoch(options_[k]);
  }

  /// hybrid_mode "sum": every split's loss on the same parameters, one optimizer step on the sum
  /// (upstream back-propagates the summed totals once; Controller::accumulate adds each split's
  /// gradients, which is the same sum, and apply_accumulated steps).
  double sum_tick(const ActionConfig& a) {
    double total = 0;
    for (std::size_t k = 0; k < a.splits.size(); ++k) {
      epoch_end(a, k);
      const LossRecord& rec = ctl_.accumulate(feed_.next(k, samplers_[k]), options_[k]);
      if (a.make_logs) log_.write(rec, ctl_.ticks(), a.log_prefix, a.log_groups);
      total += rec.total;
      ctl_.tick();
    }
    ctl_.apply_accumulated();
    return total;
  }

  // ---------------------------------------------------------------- tests
  void run_tests(const ActionConfig& a) {
    for (const auto& t : a.tests) run_test(t);
  }

  /// Upstream's test(): eval on a split, log the losses (then tick, as upstream), dump latents to
  /// <log_path>/<epoch>_<latent_prefix>.csv.
  void run_test(const TestConfig& t) {
    const auto& rows = s_.splits().rows(t.on_split);
    if (rows.empty()) {
      note("warning: test on split '" + t.on_split + "' skipped: it has no cells");
      return;
    }
    const EvalOptions eo{.scope = {.reconstruction = t.test_main,
                                   .main_regularization = true,
                                   .phenos = Scope::group(t.test_pheno, t.selected_pheno),
                                   .signatures = Scope::group(t.test_signature, t.selected_signature)},
                         .save_raw_loss = t.save_raw};
    const bool dump = t.dump_latent || t.dump_pre_encoder || t.dump_reconstructed || t.dump_pheno_out ||
                      t.dump_signature_out;
    const std::string path = join(s_.setup().log_path, std::to_string(ctl_.epoch()) + "_" + t.latent_prefix + ".csv");
    std::unique_ptr<CsvWriter> csv;
    std::vector<Column> cols;
    bool first = true;
    const double total_rows = static_cast<double>(rows.size());
    evaluate(rows, eo, [&](std::span<const Index> chunk) {
      const LossRecord& rec = ctl_.record();
      const double w = static_cast<double>(chunk.size()) / total_rows;
      if (first) {
        mean_ = rec;
        scale(mean_, w, nullptr);
      } else {
        scale(mean_, w, &rec);
      }
      if (dump) {
        if (first) {
          cols = columns(t);
          std::vector<std::string> header{"cell"};
          for (const auto& c : cols)
            for (Index j = 0; j < c.width; ++j)
              header.push_back(c.gene_names ? s_.data().genes[static_cast<std::size_t>(j)]
                                            : c.prefix + std::to_string(j + 1));
          if (writer()) csv = std::make_unique<CsvWriter>(path, header);
        }
        dumped_.clear();
        for (std::size_t k = 0; k < cols.size(); ++k) dumped_.push_back(outputs(cols[k].var, k));  // every rank
        if (writer()) {
          feed_.names(chunk, cell_names_);
          for (std::size_t r = 0; r < chunk.size(); ++r) {
            csv->begin_row(cell_names_[r]);
            for (const auto& m : dumped_)
              for (Index j = 0; j < m.cols; ++j) csv->value(m(static_cast<Index>(r), j));
            csv->end_row();
          }
        }
      }
      first = false;
    });
    if (t.make_logs) {
      log_.write(mean_, ctl_.ticks(), t.log_prefix, t.log_groups);
      ctl_.tick();
    }
    if (csv) {
      csv->close();
      written_.push_back(path);
    }
  }

  /// r == nullptr: mean *= w; else mean += w * r (over every term r computed).
  static void scale(LossRecord& mean, double w, const LossRecord* r) {
    auto group = [&](TermValues& m, const TermValues* x) {
      for (std::size_t i = 0; i < m.values.size(); ++i) {
        if (!x) m.values[i] *= w;
        else if (x->present[i]) {
          m.values[i] = m.present[i] ? m.values[i] + w * x->values[i] : w * x->values[i];
          m.present[i] = 1;
        }
      }
    };
    auto block = [&](BlockRecord& m, const BlockRecord* x) {
      group(m.loss, x ? &x->loss : nullptr);
      group(m.regularization, x ? &x->regularization : nullptr);
      group(m.loss_raw, x ? &x->loss_raw : nullptr);
      group(m.regularization_raw, x ? &x->regularization_raw : nullptr);
      if (x) m.present = m.present || x->present;
    };
    block(mean.main, r ? &r->main : nullptr);
    for (std::size_t b = 0; b < mean.pheno.size(); ++b) block(mean.pheno[b], r ? &r->pheno[b] : nullptr);
    for (std::size_t b = 0; b < mean.signature.size(); ++b) block(mean.signature[b], r ? &r->signature[b] : nullptr);
    mean.total = r ? mean.total + w * r->total : mean.total * w;
  }

  struct Column {
    Var var;
    std::string prefix;  ///< "main." -> main.1, main.2, ...
    Index width = 0;
    bool gene_names = false;
  };
  /// Upstream's dump order: main, re_x, lat_pre, phenotype latents, phenotype outputs,
  /// signature latents, signature outputs (blocks in config order; those not computed are left out).
  std::vector<Column> columns(const TestConfig& t) const {
    const ForwardVars& f = ctl_.forward();
    const ModelSpec& m = ctl_.model_spec();
    std::vector<Column> c;
    auto add = [&](Var v, std::string prefix, bool genes = false) {
      if (v) c.push_back({v, std::move(prefix), ctl_.view(v).cols, genes});
    };
    if (t.test_main && t.dump_latent) add(f.main, "main.");
    if (t.dump_reconstructed) add(f.recon, "re_x.", t.reconstructed_gene_names);
    if (t.dump_pre_encoder) add(f.pre, "lat_pre.");
    if (t.test_pheno && t.dump_latent)
      for (std::size_t b = 0; b < m.phenos.size(); ++b) add(f.ph_lat[b], m.phenos[b].name + ".");
    if (t.test_pheno && t.dump_pheno_out)
      for (std::size_t b = 0; b < m.phenos.size(); ++b) add(f.ph_out[b], m.phenos[b].name + ".out.");
    if (t.test_signature && t.dump_latent)
      for (std::size_t b = 0; b < m.signatures.size(); ++b) add(f.sig_lat[b], m.signatures[b].name + ".");
    if (t.test_signature && t.dump_signature_out)
      for (std::size_t b = 0; b < m.signatures.size(); ++b) add(f.sig_out[b], m.signatures[b].name + ".out.");
    return c;
  }

  Session& s_;
  Controller<float>& ctl_;
  RunnerOptions opt_;
  dist::Comm comm_;
  RowGather gather_;
  Index chunk_cells_ = 0;  ///< cells of the chunk being evaluated (all ranks')
  std::vector<std::int32_t> signals_;  ///< every rank's interrupt flag (check_interrupt)
  LossLog log_;
  std::vector<data::Sampler> samplers_;
  std::vector<std::string> names_;
  std::vector<TrainOptions> options_;
  std::vector<std::string> cell_names_;  ///< of the chunk being dumped
  std::vector<MatrixRef<const float>> dumped_;  ///< its columns' rows, gathered in cell order
  LossRecord mean_;
  std::int64_t ticks_run_ = 0;
  bool stopped_ = false;
  std::vector<std::string> written_;
  std::string last_checkpoint_;  ///< the newest checkpoint written or resumed from
  Feed feed_;  ///< last: destroyed first, so its reading thread stops before the samplers go
};

}  // namespace sakura::story
