#include "loom/config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <set>
#include <sstream>

#include "loom/core/env_expand.hpp"
#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/strings.hpp"
#include "loom/core/text_encoding.hpp"

namespace loom {

namespace {

const std::vector<std::string> kDTypes = {"bf16", "fp16", "fp32"};
const std::vector<std::string> kMethods = {"lora", "qlora", "full"};
const std::vector<std::string> kSchedules = {"cosine", "linear", "constant"};
const std::vector<std::string> kBackends = {"auto", "nccl", "mpi"};
const std::vector<std::string> kBalances = {"auto", "static"};

std::string joined(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

/// " (did you mean 'x'?)" for the closest allowed word, or "" when nothing is close.
std::string didYouMean(const std::string& word, const std::vector<std::string>& allowed) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& a : allowed) {
    const size_t d = editDistance(word, a);
    if (d < best_d) best_d = d, best = a;
  }
  const size_t limit = std::max<size_t>(2, word.size() / 3);
  if (!best.empty() && best_d <= limit) return "; did you mean '" + best + "'?";
  for (const auto& a : allowed) {  // "hostname" for "host", "seq" for "seq_len"
    if (a.size() >= 3 && word.size() >= 3 && (startsWith(word, a) || startsWith(a, word))) {
      return "; did you mean '" + a + "'?";
    }
  }
  return "";
}

/// The shortest decimal text that reads back as exactly `v` ("3e-04", not "0.000299999...").
std::string shortest(double v) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

/// How a value looked in the file, for "found ..." in messages.
std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing (an empty value)";
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  return "'" + node.Scalar() + "'";
}

/// Reads the document, remembering which key paths came from --set overrides.
class Reader {
 public:
  Reader(std::string file, std::map<std::string, std::string> override_text)
      : file_(std::move(file)), override_text_(std::move(override_text)) {}

  std::string where(const YAML::Node& node, const std::string& path) const {
    // A key set by --set, lying inside a value set by one (a mapping, a list element), or in
    // a mapping an override created, is blamed on that override.
    for (std::string p = path;;) {
      auto it = override_text_.find(p);
      if (it != override_text_.end()) return "--set " + it->second;
      const auto cut = p.back() == ']' ? p.find_last_of('[') : p.find_last_of('.');
      if (cut == std::string::npos || cut == 0) break;
      p = p.substr(0, cut);
    }
    if (node.IsDefined()) {
      const YAML::Mark mark = node.Mark();
      if (mark.line >= 0) {
        return file_ + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
      }
    }
    return file_;
  }

  [[noreturn]] void fail(const YAML::Node& node, const std::string& path,
                         const std::string& message) const {
    throw InputError("config error: " + where(node, path) + ": " + path + ": " + message);
  }

  void remember(const YAML::Node& node, const std::string& path) {
    locations_[path] = where(node, path);
  }

  const std::string& file() const { return file_; }
  std::map<std::string, std::string> takeLocations() { return std::move(locations_); }

 private:
  std::string file_;
  std::map<std::string, std::string> override_text_;
  std::map<std::string, std::string> locations_;
};

/// A mapping in the document with a fixed set of allowed keys.
class Section {
 public:
  Section(Reader& reader, const YAML::Node& node, std::string path,
          std::vector<std::string> allowed)
      : reader_(reader), node_(node), path_(std::move(path)), allowed_(std::move(allowed)) {
    if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
      reader_.fail(
          node_, path_,
          "expected a mapping with keys " + joined(allowed_) + ", found " + describe(node_));
    }
    if (!node_.IsMap()) return;
    std::map<std::string, YAML::Mark> seen;
    for (const auto& kv : node_) {
      const std::string key = kv.first.Scalar();
      // yaml-cpp keeps both entries of a repeated key and a lookup finds one of them: a
      // second `lr:` further down would silently not count.
      const auto [first, fresh] = seen.emplace(key, kv.first.Mark());
      if (!fresh) {
        reader_.fail(kv.first, keyPath(key),
                     "duplicate key (also at line " + std::to_string(first->second.line + 1) +
                         "); keep one");
      }
      if (std::find(allowed_.begin(), allowed_.end(), key) == allowed_.end()) {
        reader_.fail(kv.first, keyPath(key),
                     "unknown key" + didYouMean(key, allowed_) + " Allowed keys in '" + path_ +
                         "': " + joined(allowed_));
      }
    }
  }

  std::string keyPath(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }
  bool has(const std::string& key) const {
    const YAML::Node n = child(key);
    return n.IsDefined() && !n.IsNull();
  }
  YAML::Node child(const std::string& key) const {
    // By iteration: a const lookup of a missing key yields an invalid node in yaml-cpp,
    // on which most calls throw.
    if (node_.IsMap()) {
      for (const auto& kv : node_) {
        if (kv.first.Scalar() == key) return kv.second;
      }
    }
    return YAML::Node(YAML::NodeType::Undefined);
  }
  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  Reader& reader() const { return reader_; }

  [[noreturn]] void fail(const std::string& key, const std::string& message) const {
    reader_.fail(has(key) ? child(key) : node_, keyPath(key), message);
  }

  void require(const std::string& key, const std::string& what) const {
    if (!has(key)) {
      reader_.fail(node_, keyPath(key), "missing required key: expected " + what);
    }
  }

  // Each get* reads the key if present (leaving `out` untouched otherwise) and records
  // where it came from.
  void getString(const std::string& key, std::string& out) {
    if (!has(key)) return;
    auto n = child(key);
    if (!n.IsScalar() || n.Scalar().empty())
      fail(key, "expected a non-empty string, found " + describe(n));
    out = n.Scalar();
    reader_.remember(n, keyPath(key));
  }
  void getString(const std::string& key, std::optional<std::string>& out) {
    std::string v;
    if (!has(key)) return;
    getString(key, v);
    out = v;
  }

  /// A path: read as a string, then ${VAR} placeholders expanded from the environment
  /// (env_expand.hpp); an unset variable is an error at this key.
  void getPath(const std::string& key, std::string& out) {
    if (!has(key)) return;
    std::string raw;
    getString(key, raw);
    try {
      out = expandEnv(raw);
    } catch (const EnvExpandError& e) {
      fail(key, e.what());
    }
  }
  void getPath(const std::string& key, std::optional<std::string>& out) {
    if (!has(key)) return;
    std::string v;
    getPath(key, v);
    out = v;
  }

  void getInt(const std::string& key, int64_t& out, int64_t lo, int64_t hi) {
    if (!has(key)) return;
    out = parseInt(key, lo, hi);
  }
  void getInt(const std::string& key, std::optional<int64_t>& out, int64_t lo, int64_t hi) {
    if (!has(key)) return;
    out = parseInt(key, lo, hi);
  }

  void getDouble(const std::string& key, double& out, double lo, double hi, bool lo_open = false) {
    if (!has(key)) return;
    out = parseDouble(key, lo, hi, lo_open);
  }
  void getDouble(const std::string& key, std::optional<double>& out, double lo, double hi,
                 bool lo_open = false) {
    if (!has(key)) return;
    out = parseDouble(key, lo, hi, lo_open);
  }

  void getBool(const std::string& key, bool& out) {
    if (!has(key)) return;
    auto n = child(key);
    std::string s = n.IsScalar() ? n.Scalar() : "";
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    if (s == "true" || s == "yes" || s == "on") {
      out = true;
    } else if (s == "false" || s == "no" || s == "off") {
      out = false;
    } else {
      fail(key, "expected true or false, found " + describe(n));
    }
    reader_.remember(n, keyPath(key));
  }

  void getBool(const std::string& key, std::optional<bool>& out) {
    if (!has(key)) return;
    bool v = false;
    getBool(key, v);
    out = v;
  }

  /// Reads an enum given as one of `names`; returns its index, or -1 when absent.
  int getEnum(const std::string& key, const std::vector<std::string>& names) {
    if (!has(key)) return -1;
    auto n = child(key);
    if (!n.IsScalar())
      fail(key, "expected one of " + joined(names, "|") + ", found " + describe(n));
    const auto it = std::find(names.begin(), names.end(), n.Scalar());
    if (it == names.end()) {
      fail(key, "expected one of " + joined(names, "|") + ", found " + describe(n) +
                    didYouMean(n.Scalar(), names));
    }
    reader_.remember(n, keyPath(key));
    return static_cast<int>(it - names.begin());
  }

 private:
  int64_t parseInt(const std::string& key, int64_t lo, int64_t hi) {
    auto n = child(key);
    const std::string range =
        rangeText(static_cast<double>(lo), static_cast<double>(hi), false, true);
    if (!n.IsScalar()) fail(key, "expected an integer " + range + ", found " + describe(n));
    const std::string& s = n.Scalar();
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno == ERANGE) {
      fail(key, "expected an integer " + range + ", found " + describe(n));
    }
    if (v < lo || v > hi) fail(key, "expected an integer " + range + ", found " + describe(n));
    reader_.remember(n, keyPath(key));
    return v;
  }

  double parseDouble(const std::string& key, double lo, double hi, bool lo_open) {
    auto n = child(key);
    const std::string range = rangeText(lo, hi, lo_open, false);
    if (!n.IsScalar()) fail(key, "expected a number " + range + ", found " + describe(n));
    const std::string& s = n.Scalar();
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !std::isfinite(v)) {
      fail(key, "expected a number " + range + ", found " + describe(n));
    }
    if (v < lo || v > hi || (lo_open && v == lo)) {
      fail(key, "expected a number " + range + ", found " + describe(n));
    }
    reader_.remember(n, keyPath(key));
    return v;
  }

  static std::string num(double v, bool integer) {
    if (v >= 1e18) return "inf";
    std::ostringstream o;
    if (integer) {
      o << static_cast<long long>(v);
    } else {
      o << v;
    }
    return o.str();
  }
  static std::string rangeText(double lo, double hi, bool lo_open, bool integer) {
    const bool unbounded = hi >= 1e18;
    if (unbounded) return std::string(lo_open ? "> " : ">= ") + num(lo, integer);
    return std::string("in ") + (lo_open ? "(" : "[") + num(lo, integer) + ", " + num(hi, integer) +
           "]";
  }

  Reader& reader_;
  YAML::Node node_;
  std::string path_;
  std::vector<std::string> allowed_;
};

constexpr int64_t kIntMax = std::numeric_limits<int64_t>::max();
constexpr double kInf = 1e300;

DType dtypeAt(int index) { return static_cast<DType>(index); }

void readRun(Section s, RunConfig& c) {
  s.getString("name", c.name);
  s.getPath("output_dir", c.output_dir);
  s.getInt("seed", c.seed, 0, kIntMax);
  // The run folder is created when absent; what is on the way must be folders.
  std::error_code ec;
  for (std::filesystem::path p = c.output_dir; !p.empty(); p = p.parent_path()) {
    if (!std::filesystem::exists(p, ec)) {
      if (p == p.parent_path()) break;
      continue;
    }
    if (!std::filesystem::is_directory(p, ec)) {
      s.fail("output_dir", "'" + p.string() +
                               "' exists and is not a folder; expected the run folder (created "
                               "when absent) or a path under folders");
    }
    break;
  }
}

void readModel(Section s, ModelConfig& c) {
  s.require("path", "the Hugging Face model folder (config.json + *.safetensors)");
  s.getPath("path", c.path);
  if (int i = s.getEnum("dtype", kDTypes); i >= 0) c.dtype = dtypeAt(i);
  s.getBool("gradient_checkpointing", c.gradient_checkpointing);
}

void readLora(Section s, LoraConfig& c) {
  s.getInt("r", c.r, 1, 4096);
  s.getDouble("alpha", c.alpha, 0.0, kInf, /*lo_open=*/true);
  s.getDouble("dropout", c.dropout, 0.0, 0.99);
  s.getBool("rslora", c.rslora);
  const auto& names = loraTargetNames();
  c.targets = names;  // default: all-linear
  if (!s.has("targets")) return;
  auto n = s.child("targets");
  const std::string allowed = "'all-linear' or a list of " + joined(names);
  if (n.IsScalar()) {
    if (n.Scalar() != "all-linear") {
      s.fail("targets", "expected " + allowed + ", found " + describe(n) +
                            didYouMean(n.Scalar(), {"all-linear"}));
    }
  } else if (n.IsSequence()) {
    if (n.size() == 0) s.fail("targets", "expected " + allowed + ", found an empty list");
    std::set<std::string> chosen;
    for (size_t i = 0; i < n.size(); ++i) {
      const auto item = n[i];
      const std::string item_path = s.keyPath("targets") + "[" + std::to_string(i) + "]";
      if (!item.IsScalar()) {
        s.reader().fail(item, item_path, "expected a module name, found " + describe(item));
      }
      if (std::find(names.begin(), names.end(), item.Scalar()) == names.end()) {
        s.reader().fail(item, item_path,
                        "unknown LoRA target " + describe(item) + didYouMean(item.Scalar(), names) +
                            " Allowed: " + joined(names) + " (or all-linear)");
      }
      chosen.insert(item.Scalar());
    }
    c.targets.clear();
    for (const auto& name : names) {
      if (chosen.count(name)) c.targets.push_back(name);  // canonical order
    }
  } else {
    s.fail("targets", "expected " + allowed + ", found " + describe(n));
  }
  s.reader().remember(n, s.keyPath("targets"));
}

void readFinetune(Section s, FinetuneConfig& c) {
  if (int i = s.getEnum("method", kMethods); i >= 0) c.method = static_cast<FinetuneMethod>(i);
  s.getPath("adapter", c.adapter);
  readLora(Section(s.reader(), s.child("lora"), s.keyPath("lora"),
                   {"r", "alpha", "dropout", "targets", "rslora"}),
           c.lora);
  if (c.adapter && c.method == FinetuneMethod::kFull) {
    s.fail("adapter",
           "a LoRA adapter cannot be combined with finetune.method: full; "
           "use method lora (or merge the adapter with `trainer export --merge` first)");
  }
}

void readData(Section s, DataConfig& c) {
  s.require("train", "a pre-tokenized HDF5 file made by `trainer prepare`");
  s.getPath("train", c.train);
  s.getPath("eval", c.eval);
  s.getInt("seq_len", c.seq_len, 16, 1 << 20);
  s.getBool("packing", c.packing);
  s.getBool("allow_tokenizer_mismatch", c.allow_tokenizer_mismatch);
}

void readTrain(Section s, TrainConfig& c) {
  if (s.has("global_batch_tokens") && s.has("global_batch_size")) {
    s.fail("global_batch_size",
           "global_batch_tokens and global_batch_size are mutually exclusive: set only one");
  }
  if (!s.has("global_batch_tokens") && !s.has("global_batch_size")) {
    s.require("global_batch_tokens",
              "one of global_batch_tokens (tokens per optimizer step) or global_batch_size "
              "(sequences per optimizer step)");
  }
  s.getInt("global_batch_tokens", c.global_batch_tokens, 1, kIntMax);
  s.getInt("global_batch_size", c.global_batch_size, 1, kIntMax);
  if (s.has("max_steps") && s.has("epochs")) {
    s.fail("epochs", "max_steps and epochs are mutually exclusive: set only one");
  }
  if (!s.has("max_steps") && !s.has("epochs")) {
    s.require("max_steps", "one of max_steps (optimizer steps) or epochs (passes over data.train)");
  }
  s.getInt("max_steps", c.max_steps, 1, kIntMax);
  s.getInt("epochs", c.epochs, 1, 100000);
  s.getDouble("lr", c.lr, 0.0, 1.0, /*lo_open=*/true);
  if (int i = s.getEnum("lr_schedule", kSchedules); i >= 0)
    c.lr_schedule = static_cast<LrSchedule>(i);
  s.getInt("warmup_steps", c.warmup_steps, 0, kIntMax);
  s.getDouble("weight_decay", c.weight_decay, 0.0, 10.0);
  s.getDouble("max_grad_norm", c.max_grad_norm, 0.0, kInf);
  s.getInt("eval_every", c.eval_every, 0, kIntMax);
  s.getInt("log_every", c.log_every, 1, kIntMax);
  s.getPath("eval_prompts", c.eval_prompts);  // read (and checked) at the run's set-up
  s.getInt("eval_max_new_tokens", c.eval_max_new_tokens, 1, 1 << 16);
  s.getInt("profile_steps", c.profile_steps, 0, 100);
  s.getInt("profile_start", c.profile_start, 1, kIntMax);
  if (c.max_steps && c.profile_steps > 0 && c.profile_start + c.profile_steps - 1 > *c.max_steps) {
    s.fail(s.has("profile_start") ? "profile_start" : "profile_steps",
           "the profiled steps " + std::to_string(c.profile_start) + "-" +
               std::to_string(c.profile_start + c.profile_steps - 1) + " end after max_steps (" +
               std::to_string(*c.max_steps) + ")");
  }
  if (c.max_steps && c.warmup_steps > *c.max_steps) {
    s.fail("warmup_steps", "warmup_steps (" + std::to_string(c.warmup_steps) +
                               ") exceeds max_steps (" + std::to_string(*c.max_steps) + ")");
  }
}

void readCheckpoint(Section s, CheckpointConfig& c) {
  s.getInt("every", c.every, 0, kIntMax);
  s.getInt("keep", c.keep, 1, 1000000);
  s.getPath("resume", c.resume);
  if (c.resume != "auto" && c.resume != "never") {
    std::error_code ec;
    const bool found =
        std::filesystem::exists(std::filesystem::path(c.resume) / "trainer_state.json", ec);
    if (!found) {
      s.fail("resume", "'" + c.resume +
                           "' is not a checkpoint folder (no trainer_state.json there); expected "
                           "auto, never, or the path of a checkpoints/step-N folder");
    }
  }
}

bool validDevice(const std::string& d) {
  if (d == "cpu" || d == "cuda") return true;
  if (d.rfind("cuda:", 0) != 0 || d.size() == 5) return false;
  return std::all_of(d.begin() + 5, d.end(), [](unsigned char ch) { return std::isdigit(ch); });
}

void readCluster(Section s, ClusterConfig& c) {
  if (int i = s.getEnum("backend", kBackends); i >= 0) c.backend = static_cast<Backend>(i);
  if (int i = s.getEnum("balance", kBalances); i >= 0) c.balance = static_cast<Balance>(i);
  s.getBool("overlap_grad_sync", c.overlap_grad_sync);
  s.getDouble("collective_timeout_s", c.collective_timeout_s, 0.0, 1e6, /*lo_open=*/true);
  if (!s.has("ranks")) return;
  auto list = s.child("ranks");
  if (!list.IsSequence()) {
    s.fail("ranks",
           "expected a list of {match, device, weight, micro_batch, dtype, loss_chunk_tokens, "
           "gradient_checkpointing} entries, found " +
               describe(list));
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = s.keyPath("ranks") + "[" + std::to_string(i) + "]";
    Section entry(s.reader(), list[i], path,
                  {"match", "device", "weight", "micro_batch", "dtype", "loss_chunk_tokens",
                   "gradient_checkpointing"});
    if (!list[i].IsMap()) {
      s.reader().fail(list[i], path,
                      "expected a mapping with keys match, device, weight, "
                      "micro_batch, dtype, loss_chunk_tokens, gradient_checkpointing, found " +
                          describe(list[i]));
    }
    RankRule rule;
    Section match(s.reader(), entry.child("match"), path + ".match", {"host", "local_rank", "gpu"});
    match.getString("host", rule.match_host);
    match.getInt("local_rank", rule.match_local_rank, 0, 4096);
    match.getString("gpu", rule.match_gpu);
    entry.getString("device", rule.device);
    if (rule.device && !validDevice(*rule.device)) {
      entry.fail("device", "expected cpu, cuda or cuda:N, found '" + *rule.device + "'");
    }
    entry.getDouble("weight", rule.weight, 0.0, 1e6, /*lo_open=*/true);
    entry.getInt("micro_batch", rule.micro_batch, 1, 65536);
    if (int d = entry.getEnum("dtype", kDTypes); d >= 0) rule.dtype = dtypeAt(d);
    entry.getInt("loss_chunk_tokens", rule.loss_chunk_tokens, 16, 1 << 20);
    entry.getBool("gradient_checkpointing", rule.gradient_checkpointing);
    c.ranks.push_back(rule);
  }
}

/// Applies "a.b.c=value" to the document; list elements by index ("cluster.ranks.0.weight").
void applyOverride(YAML::Node& root, const std::string& text, const std::string& file,
                   std::map<std::string, std::string>& override_text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw InputError("--set " + text + ": expected key.path=value, e.g. --set train.lr=3e-4");
  }
  const std::string key = text.substr(0, eq);
  const std::string value = text.substr(eq + 1);
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty())
      throw InputError("--set " + text + ": empty component in key path '" + key + "'");
    parts.push_back(part);
  }
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw InputError("--set " + text + ": the value is not valid YAML: " + e.msg);
  }
  YAML::Node cur = root;
  std::string path;
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    std::string& part = parts[i];
    if (cur.IsSequence()) {
      char* end = nullptr;
      const long idx = std::strtol(part.c_str(), &end, 10);
      if (*end != '\0' || idx < 0 || static_cast<size_t>(idx) >= cur.size()) {
        throw InputError("--set " + text + ": '" + path + "' is a list of " +
                         std::to_string(cur.size()) + " entries; '" + part +
                         "' is not an index into it");
      }
      path += "[" + part + "]";
      if (last) {
        cur[static_cast<size_t>(idx)] = parsed;
      } else {
        YAML::Node next = cur[static_cast<size_t>(idx)];
        cur.reset(next);
      }
      continue;
    }
    path += (path.empty() ? "" : ".") + part;
    if (!cur.IsMap() && !cur.IsNull()) {
      throw InputError("--set " + text + ": cannot set '" + part +
                       "' inside a value that is not a mapping");
    }
    if (last) {
      cur[part] = parsed;
    } else {
      YAML::Node next = cur[part];
      if (!next.IsDefined() || next.IsNull()) {
        cur[part] = YAML::Node(YAML::NodeType::Map);
        next = cur[part];
        override_text.emplace(path, text);  // the file has no such key: this --set made it
      }
      cur.reset(next);
    }
  }
  override_text[path] = text;
  (void)file;
}

}  // namespace

const std::vector<std::string>& loraTargetNames() {
  static const std::vector<std::string> names = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

std::string toString(DType v) { return kDTypes.at(static_cast<int>(v)); }
std::string toString(FinetuneMethod v) { return kMethods.at(static_cast<int>(v)); }
std::string toString(LrSchedule v) { return kSchedules.at(static_cast<int>(v)); }
std::string toString(Backend v) { return kBackends.at(static_cast<int>(v)); }
std::string toString(Balance v) { return kBalances.at(static_cast<int>(v)); }

std::string Config::where(const std::string& key_path) const {
  auto it = locations.find(key_path);
  return it != locations.end() ? it->second : source_file;
}

/// The first scalar under `node` whose text holds `needle`, with its key path and place.
static bool findScalarContaining(const YAML::Node& node, const std::string& path,
                                 const std::string& needle, std::string& found_path,
                                 YAML::Mark& mark) {
  if (node.IsScalar()) {
    if (node.Scalar().find(needle) == std::string::npos) return false;
    found_path = path.empty() ? "(the document)" : path;
    mark = node.Mark();
    return true;
  }
  if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      if (findScalarContaining(node[i], path + "[" + std::to_string(i) + "]", needle, found_path,
                               mark)) {
        return true;
      }
    }
  }
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      if (findScalarContaining(kv.second, path.empty() ? key : path + "." + key, needle, found_path,
                               mark)) {
        return true;
      }
    }
  }
  return false;
}

Config parseConfig(const std::string& yaml_text, const std::string& source_name,
                   const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    throw InputError("config error: " + source_name + ":" + std::to_string(e.mark.line + 1) + ":" +
                     std::to_string(e.mark.column + 1) + ": not valid YAML: " + e.msg);
  }
  if (!root.IsDefined() || root.IsNull()) {
    if (overrides.empty()) {
      throw InputError("config error: " + source_name +
                       ": the file is empty; expected a mapping with sections model, data, train "
                       "(and optionally run, finetune, checkpoint, cluster)");
    }
    root = YAML::Node(YAML::NodeType::Map);
  }
  if (!root.IsMap()) {
    throw InputError("config error: " + source_name +
                     ":1:1: expected a mapping with sections "
                     "run, model, finetune, data, train, checkpoint, cluster, found " +
                     describe(root));
  }
  std::map<std::string, std::string> override_text;
  for (const auto& o : overrides) applyOverride(root, o, source_name, override_text);

  Reader reader(source_name, override_text);
  Section top(reader, root, "",
              {"run", "model", "finetune", "data", "train", "checkpoint", "cluster"});
  for (const char* required : {"model", "data", "train"}) {
    if (!top.has(required)) {
      // Often the section is there but an earlier value swallowed it (an unclosed quote or
      // bracket): name that value.
      const std::string needle = std::string(required) + ":";
      std::string path;
      YAML::Mark mark;
      if (findScalarContaining(root, "", needle, path, mark)) {
        throw InputError("config error: " + source_name + ":" + std::to_string(mark.line + 1) +
                         ":" + std::to_string(mark.column + 1) + ": " + path +
                         ": this value runs on over '" + needle +
                         "' and what follows it (an unclosed quote or bracket?), so section '" +
                         required + "' is missing");
      }
      throw InputError("config error: " + source_name + ": missing required section '" +
                       std::string(required) + "'");
    }
  }
  Config c;
  c.source_file = source_name;
  auto section = [&](const std::string& name, std::vector<std::string> keys) {
    return Section(reader, top.child(name), name, std::move(keys));
  };
  readRun(section("run", {"name", "output_dir", "seed"}), c.run);
  readModel(section("model", {"path", "dtype", "gradient_checkpointing"}), c.model);
  readFinetune(section("finetune", {"method", "adapter", "lora"}), c.finetune);
  readData(section("data", {"train", "eval", "seq_len", "packing", "allow_tokenizer_mismatch"}),
           c.data);
  readTrain(section("train", {"global_batch_tokens", "global_batch_size", "max_steps", "epochs",
                              "lr", "lr_schedule", "warmup_steps", "weight_decay", "max_grad_norm",
                              "eval_every", "log_every", "eval_prompts", "eval_max_new_tokens",
                              "profile_steps", "profile_start"}),
            c.train);
  readCheckpoint(section("checkpoint", {"every", "keep", "resume"}), c.checkpoint);
  readCluster(section("cluster",
                      {"backend", "balance", "overlap_grad_sync", "collective_timeout_s", "ranks"}),
              c.cluster);
  c.locations = reader.takeLocations();
  return c;
}

Config loadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  return parseConfig(readUtf8TextFile(path, "config file"), path, overrides);
}

std::string toYaml(const Config& c) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "run" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << c.run.name;
  e << YAML::Key << "output_dir" << YAML::Value << escapeEnv(c.run.output_dir);
  e << YAML::Key << "seed" << YAML::Value << c.run.seed;
  e << YAML::EndMap;

  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "path" << YAML::Value << escapeEnv(c.model.path);
  e << YAML::Key << "dtype" << YAML::Value << toString(c.model.dtype);
  e << YAML::Key << "gradient_checkpointing" << YAML::Value << c.model.gradient_checkpointing;
  e << YAML::EndMap;

  e << YAML::Key << "finetune" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "method" << YAML::Value << toString(c.finetune.method);
  if (c.finetune.adapter)
    e << YAML::Key << "adapter" << YAML::Value << escapeEnv(*c.finetune.adapter);
  e << YAML::Key << "lora" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "r" << YAML::Value << c.finetune.lora.r;
  e << YAML::Key << "alpha" << YAML::Value << shortest(c.finetune.lora.alpha);
  e << YAML::Key << "dropout" << YAML::Value << shortest(c.finetune.lora.dropout);
  e << YAML::Key << "targets" << YAML::Value << YAML::Flow << c.finetune.lora.targets;
  e << YAML::Key << "rslora" << YAML::Value << c.finetune.lora.rslora;
  e << YAML::EndMap << YAML::EndMap;

  e << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "train" << YAML::Value << escapeEnv(c.data.train);
  if (c.data.eval) e << YAML::Key << "eval" << YAML::Value << escapeEnv(*c.data.eval);
  e << YAML::Key << "seq_len" << YAML::Value << c.data.seq_len;
  e << YAML::Key << "packing" << YAML::Value << c.data.packing;
  e << YAML::Key << "allow_tokenizer_mismatch" << YAML::Value << c.data.allow_tokenizer_mismatch;
  e << YAML::EndMap;

  const auto& t = c.train;
  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  if (t.global_batch_tokens)
    e << YAML::Key << "global_batch_tokens" << YAML::Value << *t.global_batch_tokens;
  if (t.global_batch_size)
    e << YAML::Key << "global_batch_size" << YAML::Value << *t.global_batch_size;
  if (t.max_steps) e << YAML::Key << "max_steps" << YAML::Value << *t.max_steps;
  if (t.epochs) e << YAML::Key << "epochs" << YAML::Value << *t.epochs;
  e << YAML::Key << "lr" << YAML::Value << shortest(t.lr);
  e << YAML::Key << "lr_schedule" << YAML::Value << toString(t.lr_schedule);
  e << YAML::Key << "warmup_steps" << YAML::Value << t.warmup_steps;
  e << YAML::Key << "weight_decay" << YAML::Value << shortest(t.weight_decay);
  e << YAML::Key << "max_grad_norm" << YAML::Value << shortest(t.max_grad_norm);
  e << YAML::Key << "eval_every" << YAML::Value << t.eval_every;
  e << YAML::Key << "log_every" << YAML::Value << t.log_every;
  if (t.eval_prompts) e << YAML::Key << "eval_prompts" << YAML::Value << escapeEnv(*t.eval_prompts);
  e << YAML::Key << "eval_max_new_tokens" << YAML::Value << t.eval_max_new_tokens;
  e << YAML::Key << "profile_steps" << YAML::Value << t.profile_steps;
  e << YAML::Key << "profile_start" << YAML::Value << t.profile_start;
  e << YAML::EndMap;

  e << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "every" << YAML::Value << c.checkpoint.every;
  e << YAML::Key << "keep" << YAML::Value << c.checkpoint.keep;
  e << YAML::Key << "resume" << YAML::Value << escapeEnv(c.checkpoint.resume);
  e << YAML::EndMap;

  e << YAML::Key << "cluster" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "backend" << YAML::Value << toString(c.cluster.backend);
  e << YAML::Key << "balance" << YAML::Value << toString(c.cluster.balance);
  e << YAML::Key << "overlap_grad_sync" << YAML::Value << c.cluster.overlap_grad_sync;
  e << YAML::Key << "collective_timeout_s" << YAML::Value << c.cluster.collective_timeout_s;
  e << YAML::Key << "ranks" << YAML::Value << YAML::BeginSeq;
  for (const auto& r : c.cluster.ranks) {
    e << YAML::BeginMap;
    if (r.match_host || r.match_local_rank || r.match_gpu) {
      e << YAML::Key << "match" << YAML::Value << YAML::BeginMap;
      if (r.match_host) e << YAML::Key << "host" << YAML::Value << *r.match_host;
      if (r.match_local_rank) e << YAML::Key << "local_rank" << YAML::Value << *r.match_local_rank;
      if (r.match_gpu) e << YAML::Key << "gpu" << YAML::Value << *r.match_gpu;
      e << YAML::EndMap;
    }
    if (r.device) e << YAML::Key << "device" << YAML::Value << *r.device;
    if (r.weight) e << YAML::Key << "weight" << YAML::Value << shortest(*r.weight);
    if (r.micro_batch) e << YAML::Key << "micro_batch" << YAML::Value << *r.micro_batch;
    if (r.dtype) e << YAML::Key << "dtype" << YAML::Value << toString(*r.dtype);
    if (r.loss_chunk_tokens) {
      e << YAML::Key << "loss_chunk_tokens" << YAML::Value << *r.loss_chunk_tokens;
    }
    if (r.gradient_checkpointing) {
      e << YAML::Key << "gradient_checkpointing" << YAML::Value << *r.gradient_checkpointing;
    }
    e << YAML::EndMap;
  }
  e << YAML::EndSeq << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace loom
