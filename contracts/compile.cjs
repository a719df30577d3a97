#!/usr/bin/env node
// Build the FootageRegistry artifact with the pinned solcjs (Standard JSON), or check
// that the committed artifact is exactly what the committed source compiles to.
//
//   node contracts/compile.cjs            write contracts/FootageRegistry.json
//   node contracts/compile.cjs --check    exit 1 when the committed artifact differs
//   node contracts/compile.cjs --source F --out G   compile another copy (tests)
//
// Every input of the bytecode is fixed here (compiler version via package-lock.json,
// optimizer runs, EVM version, metadata hash, source unit name), so the output is a
// pure function of the source.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const CONTRACT = "FootageRegistry";
const SOURCE_UNIT = `${CONTRACT}.sol`; // the name in metadata: never an absolute path
const HERE = __dirname;
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  // Cancun (PUSH0, MCOPY) runs on anvil, on eth-tester's py-evm and on current public chains.
  evmVersion: "cancun",
  metadata: { bytecodeHash: "ipfs", appendCBOR: true },
  outputSelection: {
    [SOURCE_UNIT]: { [CONTRACT]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "evm.deployedBytecode.immutableReferences"] },
  },
};

function usage(message) {
  process.stderr.write(`compile.cjs: ${message}\nusage: node compile.cjs [--check] [--source FILE] [--out FILE]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { check: false, source: path.join(HERE, SOURCE_UNIT), out: path.join(HERE, `${CONTRACT}.json`) };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--check") args.check = true;
    else if (arg === "--source" || arg === "--out") {
      if (i + 1 >= argv.length) usage(`${arg} needs a path`);
      args[arg.slice(2)] = path.resolve(argv[++i]);
    } else usage(`unknown argument ${arg}`);
  }
  return args;
}

function loadSolc() {
  try {
    return require("solc");
  } catch (err) {
    process.stderr.write("compile.cjs: solc is not installed in contracts/node_modules; run `make deps`\n");
    process.exit(2);
  }
}

function compile(solc, sourceText) {
  const input = { language: "Solidity", sources: { [SOURCE_UNIT]: { content: sourceText } }, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = output.errors || [];
  for (const problem of problems) process.stderr.write(`${problem.formattedMessage || problem.message}\n`);
  if (problems.some((problem) => problem.severity === "error")) {
    process.stderr.write("compile.cjs: compilation failed\n");
    process.exit(1);
  }
  const contract = output.contracts[SOURCE_UNIT][CONTRACT];
  return {
    contractName: CONTRACT,
    compiler: { name: "solc", version: solc.version() },
    settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion, metadata: SETTINGS.metadata },
    sourceSha256: crypto.createHash("sha256").update(sourceText, "utf8").digest("hex"),
    abi: contract.abi,
    bytecode: `0x${contract.evm.bytecode.object}`,
    deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
    // [start, length] byte ranges of the runtime code the constructor fills in (the owner):
    // zero in deployedBytecode, so a code comparison masks them.
    immutableRanges: Object.values(contract.evm.deployedBytecode.immutableReferences || {})
      .flat()
      .map((ref) => [ref.start, ref.length])
      .sort((a, b) => a[0] - b[0]),
  };
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const artifact = compile(loadSolc(), fs.readFileSync(args.source, "utf8"));
  const text = `${JSON.stringify(artifact, null, 2)}\n`;
  const shown = path.relative(process.cwd(), args.out) || args.out;
  if (!args.check) {
    fs.writeFileSync(args.out, text);
    process.stdout.write(`wrote ${shown} (${artifact.compiler.version})\n`);
    return;
  }
  let committed;
  try {
    committed = fs.readFileSync(args.out, "utf8");
  } catch (err) {
    process.stderr.write(`compile.cjs --check: ${shown} is missing; run \`node contracts/compile.cjs\`\n`);
    process.exit(1);
  }
  if (committed === text) {
    process.stdout.write(`${shown} matches its source (${artifact.compiler.version})\n`);
    return;
  }
  let previous = {};
  try {
    previous = JSON.parse(committed);
  } catch (err) {
    // an unparsable artifact differs in every field
  }
  const differing = Object.keys(artifact).filter(
    (key) => JSON.stringify(previous[key]) !== JSON.stringify(artifact[key]),
  );
  process.stderr.write(
    `compile.cjs --check: ${shown} is stale or altered (differs in: ${differing.join(", ") || "formatting"}); ` +
      "rebuild with `node contracts/compile.cjs` and commit both files\n",
  );
  process.exit(1);
}

main();
