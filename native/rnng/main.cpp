// nlpkit-rnng MODEL_DIR [--threads N] [--pieces]: one sentence a line on stdin -> its bracketed TOP tree a line on
// stdout, flushed per line (a long-running serving process behind a pipe). A line that cannot be
// parsed (blank, not UTF-8) answers "ERROR: <why>", so answers stay in step with the questions.
// A model directory that cannot be loaded: the reason on stderr, exit status 2.
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

#include "model.h"

namespace {

const char* USAGE =
    "usage: nlpkit-rnng MODEL_DIR [--threads N] [--pieces]\n"
    "  reads one sentence a line on stdin, writes one bracketed TOP tree a line on stdout\n"
    "  --pieces: a featurizer=wordpiece folder's word pieces instead (each word's piece ids | the\n"
    "            encoder's input row | each word's first-piece index), without running the encoder\n"
    "  MODEL_DIR: the native/ folder python -m nlpkit.export writes for a task=semantic_parse run\n";

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir;
  int threads = 1;
  bool pieces = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << USAGE;
      return 0;
    } else if (arg == "--pieces") {
      pieces = true;
    } else if (arg == "--threads" && i + 1 < argc) {
      char* end = nullptr;
      long n = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || n < 1) {
        std::cerr << "nlpkit-rnng: --threads takes a positive integer, not " << argv[i] << "\n";
        return 2;
      }
      threads = static_cast<int>(n);
    } else if (model_dir.empty() && arg.rfind("--", 0) != 0) {
      model_dir = arg;
    } else {
      std::cerr << "nlpkit-rnng: unexpected argument " << arg << "\n" << USAGE;
      return 2;
    }
  }
  if (model_dir.empty()) {
    std::cerr << USAGE;
    return 2;
  }
  nlpkit::set_threads(threads);
  try {
    nlpkit::Parser parser(model_dir);
    std::string line;
    while (std::getline(std::cin, line)) {
      try {
        std::cout << (pieces ? parser.pieces(line) : parser.parse(line)) << std::endl;  // endl flushes: one answer per question
      } catch (const std::invalid_argument& err) {
        std::cout << "ERROR: " << err.what() << std::endl;
      }
    }
  } catch (const std::exception& err) {
    std::cerr << "nlpkit-rnng: error: " << err.what() << "\n";
    return 2;
  }
  return 0;
}
