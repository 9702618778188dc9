// YAML config validation: parseConfig with --set overrides.
//
// Input: config YAML [NUL override lines, one "key.path=value" per line].
// Checked on success: the resolved config survives a round trip, as toYaml promises
// ("loads back to an equal Config"): toYaml(parse(toYaml(c))) == toYaml(c).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "loom/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = loom::fuzz::splitAtNul(loom::fuzz::asText(data, size), 2);
  std::vector<std::string> overrides;
  if (parts.size() > 1) {
    std::string_view rest = parts[1];
    while (!rest.empty()) {
      const size_t nl = rest.find('\n');
      overrides.emplace_back(rest.substr(0, nl));
      if (nl == std::string_view::npos) break;
      rest.remove_prefix(nl + 1);
    }
  }
  loom::fuzz::expectLoomErrorsOnly([&] {
    const loom::Config c = loom::parseConfig(std::string(parts[0]), "fuzz.yaml", overrides);
    const std::string yaml = loom::toYaml(c);
    std::string again;
    try {
      again = loom::toYaml(loom::parseConfig(yaml, "resolved.yaml"));
    } catch (const loom::Error& e) {
      LOOM_FUZZ_EXPECT(false, "the resolved config does not load back: " << e.what() << "\n"
                                                                         << yaml);
    }
    LOOM_FUZZ_EXPECT(again == yaml, "round trip changed the config:\n" << yaml << "---\n" << again);
  });
  return 0;
}
