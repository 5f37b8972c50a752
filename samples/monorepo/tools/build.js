// Tiny dependency-free builder used by the sample monorepo and stageflow's tests.
// Writes dist/out.txt = "<name>:<src digest>" plus the dist/out.txt of every workspace dependency,
// so a stale dependency shows up in its dependents' outputs. Appends one line to $BUILD_TRACE if set.
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const pkg = JSON.parse(fs.readFileSync("package.json", "utf8"));
const root = path.resolve(process.argv[2] || "../..");
const dirs = {};
for (const group of fs.readdirSync(root)) {
  const g = path.join(root, group);
  if (group === "node_modules" || group.startsWith(".") || !fs.statSync(g).isDirectory()) continue;
  for (const d of fs.readdirSync(g)) {
    const f = path.join(g, d, "package.json");
    if (fs.existsSync(f)) dirs[JSON.parse(fs.readFileSync(f, "utf8")).name] = path.join(g, d);
  }
}
const deps = Object.assign({}, pkg.dependencies, pkg.devDependencies, pkg.peerDependencies, pkg.optionalDependencies);
const src = fs.existsSync("src") ? fs.readdirSync("src").sort().map((f) => fs.readFileSync(path.join("src", f), "utf8")).join("\n") : "";
let out = `${pkg.name}:${crypto.createHash("sha256").update(src).digest("hex").slice(0, 12)}`;
for (const dep of Object.keys(deps).sort()) {
  if (!dirs[dep]) continue;
  const depPkg = JSON.parse(fs.readFileSync(path.join(dirs[dep], "package.json"), "utf8"));
  if (!(depPkg.scripts || {}).build) { out += `\n  ${dep}:(no build)`; continue; }
  const built = path.join(dirs[dep], "dist", "out.txt");
  if (!fs.existsSync(built)) { console.error(`missing build of dependency ${dep}`); process.exit(3); }
  out += `\n  ${fs.readFileSync(built, "utf8").split("\n").join("\n  ")}`;
}
fs.mkdirSync("dist", { recursive: true });
fs.writeFileSync(path.join("dist", "out.txt"), out);
if (process.env.BUILD_TRACE) fs.appendFileSync(process.env.BUILD_TRACE, pkg.name + "\n");
console.log(`built ${pkg.name}`);
