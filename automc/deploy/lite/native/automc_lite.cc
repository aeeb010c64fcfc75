// automc_lite: a small command-line front end to the MindSpore Lite 2.0 converter and runtime.
//
//   automc_lite convert <model.mindir> <output_prefix> [config_file] [no_fusion 0|1]
//       MindIR -> .ms (MINDIR_LITE); Lite appends ".ms" to <output_prefix>.
//   automc_lite run <model.ms> <threads> <warmup> <repeats> <n_inputs> {<input.bin> <rank> <d0> ...}...
//                   <output_prefix>
//       Builds the model, feeds raw float32 inputs (resizing when the shape differs), runs
//       warmup + repeats predictions, writes each output to <output_prefix>.<i>.bin and prints
//       one JSON line: {"latency_ms": [...], "outputs": [{"name":..., "shape": [...], "file":...}]}.
//   automc_lite bench <threads> <rounds> <calls> <model.ms>...
//       Builds every model (inputs filled with fixed pseudo-random values), then for each of
//       <rounds> rounds visits the models in a shuffled order and, per model, runs one untimed
//       prediction and <calls> timed ones, keeping the fastest. Prints one JSON line:
//       {"latency_ms": [[round 0: one figure per model], ...]}. Interleaving lets the caller
//       remove the machine's speed drift, which every model in a round shares.
//   automc_lite benchmark --modelFile=<model.ms> [--numThreads=2] [--loopCount=10] [--warmUpLoopCount=3]
//                         [--timeProfiling=false] [--cpuBindMode=1] [--device=CPU]
//       MindSpore Lite's `benchmark` tool, the flags and output automc reads from it (automc/deploy/
//       benchmark.py): inputs filled with fixed pseudo-random values, warm-up predictions, timed
//       ones, then (with --timeProfiling=true) the per-operator and per-type tables of
//       BenchmarkBase::PrintResult and the summary line
//       "Model = m.ms, NumThreads = 1, MinRunTime = ... ms, MaxRuntime = ... ms, AvgRunTime = ... ms".
//
// Written for automc; links against the libraries shipped in the mindspore-lite 2.0.0 wheel.
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/status.h"
#include "include/api/types.h"
#include "include/registry/converter_context.h"

namespace mindspore {
// The wheel ships no converter.h. This declares the subset of the exported
// mindspore::Converter API used here (symbols in libmindspore_converter.so).
struct ConverterPara;
class Converter {
 public:
  Converter(converter::FmkType fmk_type, const std::vector<char> &model_file, const std::vector<char> &output_file,
            const std::vector<char> &weight_file);
  void SetSaveType(ModelType save_type);
  void SetConfigFile(const std::vector<char> &config_file);
  void SetNoFusion(bool no_fusion);
  Status Convert();

 private:
  std::shared_ptr<ConverterPara> data_;
};
}  // namespace mindspore

namespace {

std::vector<char> Chars(const std::string &s) { return std::vector<char>(s.begin(), s.end()); }

int Fail(const std::string &msg) {
  std::cerr << "automc_lite: " << msg << std::endl;
  return 1;
}

std::string JsonEscape(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

int Convert(int argc, char **argv) {
  if (argc < 4) return Fail("usage: convert <model.mindir> <output_prefix> [config_file] [no_fusion]");
  std::string model = argv[2], output = argv[3];
  std::string config = argc > 4 ? argv[4] : "";
  bool no_fusion = argc > 5 && std::string(argv[5]) == "1";
  // Placement-new into an over-sized buffer: the real object may hold more than our declaration.
  alignas(64) static unsigned char storage[4096];
  auto *conv = new (storage) mindspore::Converter(mindspore::converter::kFmkTypeMs, Chars(model), Chars(output),
                                                  Chars(""));
  conv->SetSaveType(mindspore::kMindIR_Lite);
  if (!config.empty()) conv->SetConfigFile(Chars(config));
  if (no_fusion) conv->SetNoFusion(true);
  mindspore::Status st = conv->Convert();
  if (st != mindspore::kSuccess) {
    return Fail("conversion failed: status " + std::to_string(static_cast<int>(st.StatusCode())) + " " +
                st.ToString());
  }
  std::cout << "{\"ok\": true}" << std::endl;
  return 0;
}

bool ReadFile(const std::string &path, std::vector<char> *buf) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return false;
  std::streamsize n = f.tellg();
  f.seekg(0, std::ios::beg);
  buf->resize(static_cast<size_t>(n));
  return static_cast<bool>(f.read(buf->data(), n));
}

// Reads a .ms file and builds it for the CPU (fp32, `threads` threads); "" on success, else why not.
std::string BuildModel(const std::string &path, int threads, mindspore::Model *model) {
  std::vector<char> buf;
  if (!ReadFile(path, &buf)) return "cannot read " + path;
  auto context = std::make_shared<mindspore::Context>();
  context->SetThreadNum(threads > 0 ? threads : 1);
  auto cpu = std::make_shared<mindspore::CPUDeviceInfo>();
  cpu->SetEnableFP16(false);
  context->MutableDeviceInfo().push_back(cpu);
  mindspore::Status st = model->Build(buf.data(), buf.size(), mindspore::kMindIR_Lite, context);
  return st == mindspore::kSuccess ? "" : "Model::Build failed for " + path + ": " + st.ToString();
}

int Run(int argc, char **argv) {
  int i = 2;
  auto need = [&](int k) { return i + k <= argc; };
  if (!need(5)) return Fail("usage: run <model.ms> <threads> <warmup> <repeats> <n_inputs> ... <output_prefix>");
  std::string model_path = argv[i++];
  int threads = std::atoi(argv[i++]);
  int warmup = std::atoi(argv[i++]);
  int repeats = std::atoi(argv[i++]);
  int n_inputs = std::atoi(argv[i++]);
  std::vector<std::string> in_files;
  std::vector<std::vector<int64_t>> in_shapes;
  for (int k = 0; k < n_inputs; ++k) {
    if (!need(2)) return Fail("missing input file/rank");
    in_files.push_back(argv[i++]);
    int rank = std::atoi(argv[i++]);
    if (!need(rank)) return Fail("missing input dims");
    std::vector<int64_t> shape;
    for (int r = 0; r < rank; ++r) shape.push_back(std::atoll(argv[i++]));
    in_shapes.push_back(shape);
  }
  if (!need(1)) return Fail("missing output prefix");
  std::string out_prefix = argv[i++];

  mindspore::Model model;
  std::string error = BuildModel(model_path, threads, &model);
  if (!error.empty()) return Fail(error);
  mindspore::Status st;

  auto inputs = model.GetInputs();
  if (static_cast<int>(inputs.size()) != n_inputs) {
    return Fail("model has " + std::to_string(inputs.size()) + " inputs, got " + std::to_string(n_inputs));
  }
  bool resize = false;
  for (int k = 0; k < n_inputs; ++k) {
    if (inputs[k].Shape() != in_shapes[k]) resize = true;
  }
  if (resize) {
    st = model.Resize(inputs, in_shapes);
    if (st != mindspore::kSuccess) return Fail("Model::Resize failed: " + st.ToString());
    inputs = model.GetInputs();
  }
  for (int k = 0; k < n_inputs; ++k) {
    std::vector<char> data;
    if (!ReadFile(in_files[k], &data)) return Fail("cannot read " + in_files[k]);
    if (data.size() != inputs[k].DataSize()) {
      return Fail("input " + std::to_string(k) + " has " + std::to_string(data.size()) + " bytes, model expects " +
                  std::to_string(inputs[k].DataSize()));
    }
    std::memcpy(inputs[k].MutableData(), data.data(), data.size());
  }

  std::vector<double> times;
  std::vector<mindspore::MSTensor> outputs;
  for (int r = 0; r < warmup + repeats; ++r) {
    outputs.clear();
    auto t0 = std::chrono::steady_clock::now();
    st = model.Predict(inputs, &outputs);
    auto t1 = std::chrono::steady_clock::now();
    if (st != mindspore::kSuccess) return Fail("Model::Predict failed: " + st.ToString());
    if (r >= warmup) times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }

  std::ostringstream js;
  js << "{\"latency_ms\": [";
  for (size_t k = 0; k < times.size(); ++k) js << (k ? ", " : "") << times[k];
  js << "], \"outputs\": [";
  for (size_t k = 0; k < outputs.size(); ++k) {
    auto &t = outputs[k];
    if (t.DataType() != mindspore::DataType::kNumberTypeFloat32) {
      return Fail("output " + std::to_string(k) + " is not float32");
    }
    std::string file = out_prefix + "." + std::to_string(k) + ".bin";
    std::ofstream f(file, std::ios::binary);
    auto data = t.Data();
    f.write(static_cast<const char *>(data.get()), static_cast<std::streamsize>(t.DataSize()));
    if (!f) return Fail("cannot write " + file);
    js << (k ? ", " : "") << "{\"name\": \"" << JsonEscape(t.Name()) << "\", \"shape\": [";
    auto shape = t.Shape();
    for (size_t d = 0; d < shape.size(); ++d) js << (d ? ", " : "") << shape[d];
    js << "], \"file\": \"" << JsonEscape(file) << "\"}";
  }
  js << "]}";
  std::cout << js.str() << std::endl;
  return 0;
}

int Bench(int argc, char **argv) {
  if (argc < 6) return Fail("usage: bench <threads> <rounds> <calls> <model.ms>...");
  int threads = std::atoi(argv[2]);
  int rounds = std::atoi(argv[3]);
  int calls = std::atoi(argv[4]);
  if (rounds < 1 || calls < 1) return Fail("rounds and calls must be >= 1");
  size_t n = static_cast<size_t>(argc - 5);
  std::vector<std::unique_ptr<mindspore::Model>> models;
  std::vector<std::vector<mindspore::MSTensor>> inputs(n);
  uint32_t state = 12345u;
  auto next = [&state]() {
    state = state * 1664525u + 1013904223u;
    return state;
  };
  for (size_t m = 0; m < n; ++m) {
    std::string path = argv[5 + m];
    models.emplace_back(new mindspore::Model());
    std::string error = BuildModel(path, threads, models.back().get());
    if (!error.empty()) return Fail(error);
    inputs[m] = models.back()->GetInputs();
    for (auto &t : inputs[m]) {
      if (t.DataType() != mindspore::DataType::kNumberTypeFloat32) return Fail(path + ": input is not float32");
      auto *data = static_cast<float *>(t.MutableData());
      for (int64_t k = 0; k < t.ElementNum(); ++k) data[k] = static_cast<float>(next() % 2001) / 1000.0f - 1.0f;
    }
  }
  std::vector<size_t> order(n);
  for (size_t m = 0; m < n; ++m) order[m] = m;
  std::vector<std::vector<double>> best(rounds, std::vector<double>(n, 0.0));
  std::vector<mindspore::MSTensor> outputs;
  for (int r = 0; r < rounds; ++r) {
    for (size_t k = n; k > 1; --k) std::swap(order[k - 1], order[next() % k]);
    for (size_t m : order) {
      double fastest = 0.0;
      for (int c = 0; c <= calls; ++c) {
        outputs.clear();
        auto t0 = std::chrono::steady_clock::now();
        mindspore::Status st = models[m]->Predict(inputs[m], &outputs);
        auto t1 = std::chrono::steady_clock::now();
        if (st != mindspore::kSuccess) return Fail("Model::Predict failed for " + std::string(argv[5 + m]));
        double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
        if (c > 0 && (c == 1 || ms < fastest)) fastest = ms;
      }
      best[r][m] = fastest;
    }
  }
  std::ostringstream js;
  js << "{\"latency_ms\": [";
  for (int r = 0; r < rounds; ++r) {
    js << (r ? ", [" : "[");
    for (size_t m = 0; m < n; ++m) js << (m ? ", " : "") << best[r][m];
    js << "]";
  }
  js << "]}";
  std::cout << js.str() << std::endl;
  return 0;
}

// Fills every float32 input with fixed pseudo-random values in [-1, 1]; "" on success.
std::string FillInputs(std::vector<mindspore::MSTensor> *inputs, const std::string &path) {
  uint32_t state = 12345u;
  for (auto &t : *inputs) {
    if (t.DataType() != mindspore::DataType::kNumberTypeFloat32) return path + ": input is not float32";
    auto *data = static_cast<float *>(t.MutableData());
    for (int64_t k = 0; k < t.ElementNum(); ++k) {
      state = state * 1664525u + 1013904223u;
      data[k] = static_cast<float>(state % 2001) / 1000.0f - 1.0f;
    }
  }
  return "";
}

// name (or type) -> (calls, total ms): what BenchmarkBase keeps per operator
using OpTimes = std::map<std::string, std::pair<int, float>>;

// One table as BenchmarkBase::PrintResult prints it: a dashed line, the title row, one row per key
// (sorted), columns padded to their widest entry (+4) and separated by tabs.
void PrintOpTable(const std::vector<std::string> &title, const OpTimes &result, int loops, float total) {
  const size_t kColumns = 5, kExtra = 4;
  std::vector<size_t> width(kColumns, 0);
  std::vector<std::vector<std::string>> rows;
  char buf[64];
  for (const auto &it : result) {
    std::vector<std::string> row{it.first};
    snprintf(buf, sizeof(buf), "%f", it.second.second / static_cast<float>(loops));
    row.emplace_back(buf);
    snprintf(buf, sizeof(buf), "%f", total > 0 ? it.second.second / total : 0.0f);
    row.emplace_back(buf);
    row.push_back(std::to_string(it.second.first));
    snprintf(buf, sizeof(buf), "%f", it.second.second);
    row.emplace_back(buf);
    for (size_t c = 0; c < kColumns; ++c) {
      if (row[c].size() > width[c]) width[c] = row[c].size() + kExtra;
    }
    rows.push_back(row);
  }
  printf("-------------------------------------------------------------------------\n");
  for (size_t c = 0; c < kColumns; ++c) {
    std::string cell = title[c];
    if (cell.size() > width[c]) width[c] = cell.size();
    cell.resize(width[c], ' ');
    printf("%s\t", cell.c_str());
  }
  printf("\n");
  for (auto &row : rows) {
    for (size_t c = 0; c < kColumns; ++c) {
      row[c].resize(width[c], ' ');
      printf("%s\t", row[c].c_str());
    }
    printf("\n");
  }
}

bool ParseInt(const std::string &text, int *out) {
  char *end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0') return false;
  *out = static_cast<int>(v);
  return true;
}

// Lite's --cpuBindMode on this process: 0 leaves the threads free; 1 (big cores first, Lite's default)
// binds the process, and so every thread the runtime starts, to its last `threads` allowed CPUs, 2
// (little cores first) to its first ones. Lite 2.0's runtime runs the kernels on an actor thread
// while the calling thread waits for it: unbound, the two sit on different cores and every inference
// pays a hand-over between them, and any other process on either core stalls it. Returns the CPUs.
std::string BindCpus(int mode, int threads) {
  if (mode == 0) return "not bound";
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return "not bound (sched_getaffinity failed)";
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  if (mode == 1) std::reverse(cpus.begin(), cpus.end());
  cpus.resize(std::min(cpus.size(), static_cast<size_t>(threads)));
  cpu_set_t chosen;
  CPU_ZERO(&chosen);
  std::string text;
  for (int c : cpus) {
    CPU_SET(c, &chosen);
    text += (text.empty() ? "" : ",") + std::to_string(c);
  }
  if (sched_setaffinity(0, sizeof(chosen), &chosen) != 0) return "not bound (sched_setaffinity failed)";
  return "CPU " + text;
}

int Benchmark(int argc, char **argv) {
  std::string model_path, device = "CPU";
  int threads = 2, loops = 10, warmup = 3, bind_mode = 1;
  bool profile = false;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) return Fail("benchmark: flags look like --name=value, got " + arg);
    std::string key = arg.substr(2, eq - 2), value = arg.substr(eq + 1);
    bool ok = true;
    if (key == "modelFile") {
      model_path = value;
    } else if (key == "numThreads") {
      ok = ParseInt(value, &threads) && threads >= 1;
    } else if (key == "loopCount") {
      ok = ParseInt(value, &loops) && loops >= 1;
    } else if (key == "warmUpLoopCount") {
      ok = ParseInt(value, &warmup) && warmup >= 0;
    } else if (key == "cpuBindMode") {
      ok = ParseInt(value, &bind_mode) && bind_mode >= 0 && bind_mode <= 2;
    } else if (key == "timeProfiling") {
      ok = value == "true" || value == "false";
      profile = value == "true";
    } else if (key == "device") {
      ok = value == "CPU";
      device = value;
    } else {
      return Fail("benchmark: unknown flag --" + key + " (accepted: --modelFile --numThreads --loopCount "
                  "--warmUpLoopCount --timeProfiling --cpuBindMode --device=CPU)");
    }
    if (!ok) return Fail("benchmark: bad value in " + arg);
  }
  if (model_path.empty()) return Fail("benchmark: --modelFile=<model.ms> is required");
  std::string model_name = model_path.substr(model_path.find_last_of('/') + 1);
  std::string bound = BindCpus(bind_mode, threads);
  std::cout << "ModelPath = " << model_path << "\nModelType = MindIR_Lite\nDeviceType = " << device
            << "\nNumThreads = " << threads << "\nLoopCount = " << loops << "\nWarmUpLoopCount = " << warmup
            << "\nCpuBindMode = " << bind_mode << " (" << bound << ")\nTimeProfiling = " << (profile ? "true" : "false")
            << std::endl;

  mindspore::Model model;
  std::vector<mindspore::MSTensor> inputs, outputs;
  std::string error = BuildModel(model_path, threads, &model);
  if (error.empty()) {
    inputs = model.GetInputs();
    error = FillInputs(&inputs, model_path);
  }
  if (!error.empty()) {
    std::cout << "Run Benchmark " << model_name << " Failed" << std::endl;
    return Fail(error);
  }

  OpTimes by_name, by_type;
  std::map<std::string, std::chrono::steady_clock::time_point> started;
  std::mutex lock;
  float op_total = 0.0f;
  mindspore::MSKernelCallBack before = nullptr, after = nullptr;
  if (profile) {
    before = [&](const std::vector<mindspore::MSTensor> &, const std::vector<mindspore::MSTensor> &,
                 const mindspore::MSCallBackParam &op) {
      std::lock_guard<std::mutex> hold(lock);
      started[op.node_name] = std::chrono::steady_clock::now();
      return true;
    };
    after = [&](const std::vector<mindspore::MSTensor> &, const std::vector<mindspore::MSTensor> &,
                const mindspore::MSCallBackParam &op) {
      auto end = std::chrono::steady_clock::now();
      std::lock_guard<std::mutex> hold(lock);
      float cost = std::chrono::duration<float, std::milli>(end - started[op.node_name]).count();
      op_total += cost;
      by_name[op.node_name].first++;
      by_name[op.node_name].second += cost;
      by_type[op.node_type].first++;
      by_type[op.node_type].second += cost;
      return true;
    };
  }

  std::cout << "Running warm up loops..." << std::endl;
  for (int r = 0; r < warmup; ++r) {
    outputs.clear();
    if (model.Predict(inputs, &outputs) != mindspore::kSuccess) return Fail("Model::Predict failed for " + model_path);
  }
  std::cout << "Running benchmark loops..." << std::endl;
  double min_ms = 0.0, max_ms = 0.0, sum_ms = 0.0;
  for (int r = 0; r < loops; ++r) {
    outputs.clear();
    auto t0 = std::chrono::steady_clock::now();
    mindspore::Status st = model.Predict(inputs, &outputs, before, after);
    auto t1 = std::chrono::steady_clock::now();
    if (st != mindspore::kSuccess) return Fail("Model::Predict failed for " + model_path + ": " + st.ToString());
    double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    min_ms = r == 0 ? ms : std::min(min_ms, ms);
    max_ms = std::max(max_ms, ms);
    sum_ms += ms;
  }
  if (profile) {
    PrintOpTable({"opName", "avg(ms)", "percent", "calledTimes", "opTotalTime"}, by_name, loops, op_total);
    PrintOpTable({"opType", "avg(ms)", "percent", "calledTimes", "opTotalTime"}, by_type, loops, op_total);
  }
  printf("Model = %s, NumThreads = %d, MinRunTime = %f ms, MaxRuntime = %f ms, AvgRunTime = %f ms\n",
         model_name.c_str(), threads, min_ms, max_ms, sum_ms / loops);
  std::cout << "Run Benchmark " << model_name << " Success." << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2) return Fail("usage: automc_lite convert|run|bench|benchmark ...");
  std::string cmd = argv[1];
  if (cmd == "convert") return Convert(argc, argv);
  if (cmd == "run") return Run(argc, argv);
  if (cmd == "bench") return Bench(argc, argv);
  if (cmd == "benchmark") return Benchmark(argc, argv);
  return Fail("unknown command " + cmd);
}
