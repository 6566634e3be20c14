// The GitHub Actions workflows (.github/workflows): valid for GitHub's own workflow parser
// (@actions/workflow-parser, the parser of GitHub's Actions language service, offline),
// every action pinned to a commit, least privilege, one release at a time, and the tags,
// commands, Node version and npm scripts they rely on are the ones this repository has.
import * as assert from "node:assert/strict"
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { register } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { TemplateToken } from "@actions/workflow-parser/templates/tokens/template-token"
import { ROOT } from "../sim/program"

const WORKFLOWS = join(ROOT, ".github", "workflows")

type WorkflowParser = typeof import("@actions/workflow-parser")
let parser: Promise<WorkflowParser> | undefined

/**
 * @actions/workflow-parser is ESM only (an `import` export, no `require`) and imports its
 * JSON schema without `with { type: "json" }`, as the bundler of the language service
 * allows and Node does not. A load hook adds that attribute for its JSON files only.
 */
function workflowParser(): Promise<WorkflowParser> {
    parser ??= (async () => {
        const hook = `export async function load(url, context, next) {
            if (url.startsWith("file:") && url.endsWith(".json") && url.includes("/node_modules/@actions/"))
                return next(url, { ...context, importAttributes: { ...context.importAttributes, type: "json" } })
            return next(url, context)
        }`
        register("data:text/javascript," + encodeURIComponent(hook))
        return await import("@actions/workflow-parser")
    })()
    return parser
}

/**
 * What GitHub would say of a workflow file before running it: the errors of the schema and
 * of every ${{ }} expression (parseWorkflow), then of the jobs graph and the events
 * (convertWorkflowTemplate, e.g. `needs` naming no job). An empty list: valid.
 */
async function validateWorkflow(name: string, content: string): Promise<string[]> {
    const wp = await workflowParser()
    const { ErrorPolicy } = await import("@actions/workflow-parser/model/convert")
    const parsed = wp.parseWorkflow({ name, content }, new wp.NoOperationTraceWriter())
    if (parsed.value === undefined) {
        const errors = parsed.context.errors.getErrors().map(e => e.message)
        return errors.length > 0 ? errors : [`${name}: no workflow`]
    }
    const template = await wp.convertWorkflowTemplate(parsed.context, parsed.value, undefined, {
        errorPolicy: ErrorPolicy.TryConversion,
    })
    return (template.errors ?? []).map(e => e.Message)
}

function validateWorkflowFile(path: string): Promise<string[]> {
    return validateWorkflow(path, readFileSync(path, "utf8"))
}

/** The parsed workflow as plain data; an expression is its source text ("${{ ... }}"). */
type Plain = string | number | boolean | null | Plain[] | { [key: string]: Plain }
type Step = { id?: string; name?: string; if?: Plain; uses?: string; run?: string; with?: Record<string, Plain>; env?: Record<string, Plain> }
type Job = {
    needs?: string | string[]
    if?: Plain
    environment?: Plain
    permissions?: Plain
    env?: Record<string, Plain>
    outputs?: Record<string, string>
    steps: Step[]
    "runs-on": Plain
}
type Workflow = {
    on: Plain
    permissions?: Plain
    concurrency?: Plain
    env?: Record<string, Plain>
    jobs: Record<string, Job>
}

async function readWorkflow(file: string): Promise<Workflow> {
    const wp = await workflowParser()
    const path = join(WORKFLOWS, file)
    const parsed = wp.parseWorkflow({ name: path, content: readFileSync(path, "utf8") }, new wp.NoOperationTraceWriter())
    assert.ok(parsed.value, `${file} parses`)
    const plain = (t: TemplateToken): Plain => {
        if (wp.isMapping(t)) {
            const o: { [key: string]: Plain } = {}
            for (const { key, value } of t) o[key.toString()] = plain(value)
            return o
        }
        if (wp.isSequence(t)) return [...t].map(plain)
        if (wp.isBasicExpression(t)) return t.source ?? t.toDisplayString()
        if (wp.isString(t) || wp.isNumber(t) || wp.isBoolean(t)) return t.value
        return null
    }
    return plain(parsed.value) as unknown as Workflow
}

const SHA_PINNED = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+(\/[^@\s]+)?@[0-9a-f]{40}$/
const USES_LINE = /^\s*(?:-\s+)?uses:\s*(\S+)(.*)$/

/** Every `uses:` line of a workflow's text that is not a full commit SHA with `# vX.Y.Z` after it. */
function unpinnedUses(text: string): string[] {
    const bad: string[] = []
    for (const line of text.split("\n")) {
        const m = USES_LINE.exec(line)
        if (!m) continue
        const [, ref, rest] = m
        if (ref.startsWith("./")) continue // an action of this repository, at this commit
        if (!SHA_PINNED.test(ref) || !/^\s+#\s*v\d+\.\d+\.\d+\b/.test(rest)) bad.push(line.trim())
    }
    return bad
}

function allSteps(wf: Workflow): [string, Step][] {
    return Object.entries(wf.jobs).flatMap(([id, job]) => job.steps.map(s => [id, s] as [string, Step]))
}

function runs(wf: Workflow): string[] {
    return allSteps(wf).flatMap(([, s]) => (s.run === undefined ? [] : [s.run]))
}

function stepUsing(job: Job, action: string): Step[] {
    return job.steps.filter(s => s.uses?.split("@")[0] === action)
}

/** "20.20.x", "20.19", "20.15.1" -> the lowest version it allows, [major, minor, patch]. */
function lowestVersion(spec: string): [number, number, number] {
    const m = /^v?(\d+)(?:\.(\d+|x))?(?:\.(\d+|x))?$/.exec(spec.trim())
    assert.ok(m, `a node-version like 20.20.x or 20.20.2, not ${spec}`)
    const n = (s: string | undefined) => (s === undefined || s === "x" ? 0 : Number(s))
    return [n(m[1]), n(m[2]), n(m[3])]
}

/** Does every version `nodeVersion` allows satisfy package.json's engines.node (">=X.Y[.Z]")? */
function satisfiesEngines(nodeVersion: string, engines: string): boolean {
    const m = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(engines.trim())
    assert.ok(m, `engines.node is a ">=X.Y.Z" range (the test knows no other form): ${engines}`)
    const min = [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)]
    const low = lowestVersion(nodeVersion)
    for (let i = 0; i < 3; i++) if (low[i] !== min[i]) return low[i] > min[i]
    return true
}

const packageJson = () =>
    JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
        version: string
        devDependencies: Record<string, string>
        engines: { node: string }
        scripts: Record<string, string>
    }

describe("GitHub workflows", () => {
    let tmp = ""
    before(() => {
        tmp = mkdtempSync(join(tmpdir(), "workflows-test-"))
    })
    after(() => {
        if (tmp) rmSync(tmp, { recursive: true, force: true })
    })

    it("the validator accepts a good workflow and reports broken ones", async () => {
        const good = [
            "on: push",
            "permissions: {}",
            "jobs:",
            "  a:",
            "    runs-on: ubuntu-24.04",
            "    steps:",
            "      - run: echo ${{ github.ref_name }}",
            "  b:",
            "    needs: a",
            "    runs-on: ubuntu-24.04",
            "    steps:",
            "      - run: echo ok",
        ].join("\n")
        const goodPath = join(tmp, "good.yml")
        writeFileSync(goodPath, good)
        assert.deepEqual(await validateWorkflowFile(goodPath), [])

        const broken: [string, string, RegExp][] = [
            ["unknown job key", good.replace("    needs: a", "    needz: a"), /Unexpected value 'needz'/],
            ["runs-on missing", good.replace("    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ok", "    steps:\n      - run: echo ok"), /runs-on/],
            ["bad expression", good.replace("${{ github.ref_name }}", "${{ github.ref_name == }}"), /expression/i],
            ["needs an unknown job", good.replace("needs: a", "needs: c"), /\bc\b/],
            ["permission that does not exist", good.replace("permissions: {}", "permissions:\n  contents: admin"), /admin/],
            ["not a mapping of jobs", "on: push\njobs: [a, b]\n", /./],
        ]
        for (const [what, content, message] of broken) {
            const path = join(tmp, `${what.replace(/\W+/g, "-")}.yml`)
            writeFileSync(path, content)
            const errors = await validateWorkflowFile(path)
            assert.ok(errors.length > 0, `${what}: reported as valid`)
            assert.ok(errors.some(e => message.test(e)), `${what}: ${errors.join("; ")}`)
        }
    })

    it("every file in .github/workflows is a valid workflow", async () => {
        const files = readdirSync(WORKFLOWS).filter(f => /\.ya?ml$/.test(f))
        assert.deepEqual(
            ["ci.yml", "release.yml"].filter(f => !files.includes(f)),
            [],
            "ci.yml and release.yml exist",
        )
        for (const f of files) assert.deepEqual(await validateWorkflowFile(join(WORKFLOWS, f)), [], f)
    })

    it("every action is pinned to a full commit SHA with its release in a comment, the same one everywhere", async () => {
        assert.deepEqual(unpinnedUses("      - uses: actions/checkout@v4 # v4.2.2\n"), ["- uses: actions/checkout@v4 # v4.2.2"])
        assert.equal(unpinnedUses(`      - uses: actions/checkout@${"a".repeat(40)}\n`).length, 1, "no version comment")
        const pins = new Map<string, Set<string>>()
        for (const f of readdirSync(WORKFLOWS).filter(f => /\.ya?ml$/.test(f))) {
            const text = readFileSync(join(WORKFLOWS, f), "utf8")
            assert.deepEqual(unpinnedUses(text), [], `${f}: uses not pinned to a commit with "# vX.Y.Z"`)
            const wf = await readWorkflow(f)
            const uses = allSteps(wf).flatMap(([, s]) => (s.uses === undefined ? [] : [s.uses]))
            assert.ok(uses.length > 0, `${f} uses actions`)
            for (const u of uses) {
                assert.match(u, SHA_PINNED, `${f}: ${u}`)
                for (const line of text.split("\n").filter(l => l.includes(`uses: ${u}`))) {
                    const [action] = u.split("@")
                    if (!pins.has(action)) pins.set(action, new Set())
                    pins.get(action)!.add(line.replace(/^.*uses:\s*/, "").trim())
                }
            }
        }
        for (const [action, set] of pins) assert.equal(set.size, 1, `${action} pinned differently: ${[...set].join(" / ")}`)
        for (const a of ["actions/checkout", "actions/setup-node", "espressif/esp-idf-ci-action"])
            assert.ok(pins.has(a), `${a} is used`)
    })

    it("least privilege: read-only everywhere, contents: write in release.yml's publish job only", async () => {
        const ci = await readWorkflow("ci.yml")
        assert.deepEqual(ci.permissions, { contents: "read" })
        for (const [id, job] of Object.entries(ci.jobs))
            assert.ok(job.permissions === undefined || JSON.stringify(job.permissions) === '{"contents":"read"}', `ci.yml ${id}`)

        const release = await readWorkflow("release.yml")
        assert.ok(
            JSON.stringify(release.permissions) === "{}" || JSON.stringify(release.permissions) === '{"contents":"read"}',
            `release.yml top-level permissions: ${JSON.stringify(release.permissions)}`,
        )
        for (const [id, job] of Object.entries(release.jobs)) {
            const want = id === "publish" ? { contents: "write" } : { contents: "read" }
            assert.deepEqual(job.permissions, want, `release.yml job ${id}`)
        }
        for (const [file, wf] of [["ci.yml", ci], ["release.yml", release]] as const) {
            const text = JSON.stringify(wf)
            assert.ok(!/write-all|read-all/.test(text), `${file}: no write-all/read-all`)
            // checkout leaves no token in .git/config for the steps after it (npm ci's scripts among them)
            for (const [id, s] of allSteps(wf).filter(([, s]) => s.uses?.startsWith("actions/checkout@")))
                assert.equal(String(s.with?.["persist-credentials"]), "false", `${file} ${id}: checkout with persist-credentials: false`)
        }
        const tokenSteps = allSteps(release).filter(([, s]) => JSON.stringify(s).includes("github.token"))
        assert.deepEqual(tokenSteps.map(([id, s]) => `${id}: ${s.name}`), ["publish: gh release create"], "the token is used to publish only")
    })

    it("release.yml runs for v* tags only, one release at a time", async () => {
        const release = await readWorkflow("release.yml")
        assert.deepEqual(release.on, { push: { tags: ["v*"] } })
        assert.deepEqual(release.concurrency, { group: "release", "cancel-in-progress": false })
    })

    it("release.yml's check job takes semver tags equal to v + package.json's version and says which are prereleases", async () => {
        const release = await readWorkflow("release.yml")
        const check = release.jobs.check
        const step = check.steps.find(s => s.id === "tag")
        assert.ok(step?.run, "check has a step with id tag")
        const script: string = step.run
        assert.equal(check.outputs?.prerelease, "${{ steps.tag.outputs.prerelease }}")
        assert.equal(release.env?.TAG, "${{ github.ref_name }}")
        const cases: [string, string, string | undefined][] = [
            ["v1.2.3", "1.2.3", "false"],
            ["v0.1.0", "0.1.0", "false"],
            ["v1.2.3-rc.1", "1.2.3-rc.1", "true"],
            ["v10.0.0-beta-2.x.7", "10.0.0-beta-2.x.7", "true"],
            ["v1.2.3", "1.2.4", undefined], // not package.json's version
            ["1.2.3", "1.2.3", undefined], // no v
            ["v1.2", "1.2", undefined],
            ["v01.2.3", "01.2.3", undefined], // leading zero
            ["v1.2.3-01", "1.2.3-01", undefined],
            ["v1.2.3-", "1.2.3-", undefined],
            ["v1.2.3+build.5", "1.2.3+build.5", undefined], // build metadata: not a tag this takes
            ["va.b.c", "a.b.c", undefined],
            [`v1.2.3-${"a".repeat(30)}`, `1.2.3-${"a".repeat(30)}`, undefined], // over 31 characters
        ]
        for (const [tag, version, prerelease] of cases) {
            const dir = mkdtempSync(join(tmp, "check-"))
            writeFileSync(join(dir, "package.json"), JSON.stringify({ version }))
            const out = join(dir, "github_output")
            writeFileSync(out, "")
            const r = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", script], {
                cwd: dir,
                env: { ...process.env, TAG: tag, GITHUB_OUTPUT: out },
                encoding: "utf8",
            })
            if (prerelease === undefined) {
                assert.notEqual(r.status, 0, `${tag} (package.json ${version}) accepted: ${r.stdout}`)
                assert.match(r.stdout, /::error::/, `${tag}: says why`)
            } else {
                assert.equal(r.status, 0, `${tag} (package.json ${version}) refused: ${r.stdout}${r.stderr}`)
                assert.equal(readFileSync(out, "utf8"), `prerelease=${prerelease}\n`, tag)
            }
        }
    })

    it("release.yml: test, program and firmware after check; pack after all of them; publish after pack only", async () => {
        const release = await readWorkflow("release.yml")
        const { test, program, firmware, pack, publish } = release.jobs
        assert.deepEqual(Object.keys(release.jobs).sort(), ["check", "firmware", "pack", "program", "publish", "test"])
        for (const [id, job] of Object.entries({ test, program, firmware })) assert.deepEqual([job.needs].flat(), ["check"], id)
        assert.deepEqual([pack.needs].flat().sort(), ["check", "firmware", "program", "test"])
        assert.deepEqual([publish.needs].flat().sort(), ["check", "pack"])

        const testRuns = runs({ ...release, jobs: { test } })
        assert.deepEqual(testRuns.filter(r => /^npm (ci|test)$/.test(r.trim())).map(r => r.trim()), ["npm ci", "npm test"])

        // program: built with the pinned CLI, checked, uploaded as the artifact pack downloads
        const programRuns = program.steps.map(s => s.run ?? "")
        const build = programRuns.findIndex(r => r.trim() === "npx devicescript build src/main.ts")
        assert.ok(programRuns.indexOf("npm ci") >= 0 && programRuns.indexOf("npm ci") < build, "npm ci, then the build")
        assert.ok(programRuns.slice(build).some(r => r.includes(".devicescript/bin/bytecode.devs") && r.includes("process.env.TAG")), "@version is checked")
        const [programUpload] = stepUsing(program, "actions/upload-artifact")
        assert.deepEqual(
            { name: programUpload?.with?.name, path: programUpload?.with?.path },
            { name: "program", path: "program/program.devs" },
        )

        // a pre-release tag: no program (the CLI stamps it vX.Y.(Z+1)-pre), the firmware alone;
        // pack runs without it, and publish (whose default success() would see the skipped
        // program up the chain) says when it runs
        assert.equal(program.if, "needs.check.outputs.prerelease == 'false'")
        assert.match(String(pack.if), /^!cancelled\(\) && /)
        assert.match(String(pack.if), /needs\.program\.result == 'success' \|\| \(needs\.program\.result == 'skipped' && needs\.check\.outputs\.prerelease == 'true'\)/)
        for (const need of ["check", "test", "firmware"]) assert.match(String(pack.if), new RegExp(`needs\\.${need}\\.result == 'success'`))
        assert.match(String(publish.if), /!cancelled\(\)/)
        for (const need of ["check", "pack"]) assert.match(String(publish.if), new RegExp(`needs\\.${need}\\.result == 'success'`))
        const programDownload = stepUsing(pack, "actions/download-artifact").find(s => s.with?.name === "program")
        assert.equal(programDownload?.if, "needs.program.result == 'success'")
    })

    it("release.yml's firmware job: ESP-IDF v5.0.5 for esp32s3, --signed-apps when the OTA_SIGNED_APPS variable is true, no key", async () => {
        const release = await readWorkflow("release.yml")
        const { firmware } = release.jobs
        const [idf] = stepUsing(firmware, "espressif/esp-idf-ci-action")
        assert.ok(idf?.with, "firmware uses espressif/esp-idf-ci-action")
        assert.equal(idf.with.esp_idf_version, "v5.0.5")
        assert.equal(idf.with.target, "esp32s3")
        const command = String(idf.with.command)
        assert.match(command, /^firmware\/build\.sh --version "\$TAG" /)
        assert.ok(!command.includes("'"), "the action runs bash -c '<command>': no single quote in it")
        const help = spawnSync("bash", [join(ROOT, "firmware", "build.sh"), "--help"], { encoding: "utf8" })
        assert.equal(help.status, 0, help.stderr)
        for (const flag of command.match(/--[a-z][a-z-]*/g) ?? []) assert.ok(help.stdout.includes(`  ${flag} `), `build.sh --help lists ${flag}`)
        assert.match(command, /\$\{SIGNED_APPS:\+--signed-apps\}/, "--signed-apps only when SIGNED_APPS is set")
        assert.doesNotMatch(command, /--signed\b(?!-)/, "never --signed KEY.pem: the build has no key")
        assert.deepEqual(String(idf.with.extra_docker_args).split(/\s+/), ["-e", "TAG", "-e", "SIGNED_APPS"], "only TAG and SIGNED_APPS, no volume")
        // no key anywhere in the job: no secret, no key file, no mount
        const text = JSON.stringify(firmware)
        assert.doesNotMatch(text, /secrets\./)
        assert.doesNotMatch(text, /ota-key|SIGN_KEY|OTA_SIGNING_KEY/)

        // the step that turns the variable into SIGNED_APPS, run as GitHub runs it
        const flagStep = firmware.steps.find(s => s.env?.OTA_SIGNED_APPS !== undefined)
        assert.ok(flagStep?.run, "a step reads OTA_SIGNED_APPS")
        const flagScript: string = flagStep.run
        assert.equal(flagStep.env?.OTA_SIGNED_APPS, "${{ vars.OTA_SIGNED_APPS }}")
        assert.ok(firmware.steps.indexOf(flagStep) < firmware.steps.indexOf(idf), "before the build")
        for (const [value, flag] of [["true", "true"], ["", undefined], ["false", undefined], ["yes", "error"], ["TRUE", "error"]] as const) {
            const env = join(tmp, `github_env_${value || "unset"}`)
            writeFileSync(env, "")
            const r = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", flagScript], {
                env: { ...process.env, OTA_SIGNED_APPS: value, GITHUB_ENV: env },
                encoding: "utf8",
            })
            if (flag === "error") {
                assert.notEqual(r.status, 0, `OTA_SIGNED_APPS=${value} accepted`)
                assert.match(r.stdout, /::error::/)
            } else {
                assert.equal(r.status, 0, `OTA_SIGNED_APPS=${value}: ${r.stdout}${r.stderr}`)
                assert.equal(readFileSync(env, "utf8"), flag ? `SIGNED_APPS=${flag}\n` : "", `OTA_SIGNED_APPS=${value}`)
            }
        }

        // the command as the container runs it, with --print-config: the signed-apps overlay
        // (verifies updates, signs nothing, no key) only with SIGNED_APPS
        for (const signedApps of [true, false]) {
            const env: NodeJS.ProcessEnv = { ...process.env, TAG: "v1.2.3" }
            delete env.SIGNED_APPS
            if (signedApps) env.SIGNED_APPS = "true"
            const r = spawnSync("bash", ["--noprofile", "--norc", "-c", `${command} --print-config`], { cwd: ROOT, env, encoding: "utf8" })
            assert.equal(r.status, 0, r.stderr)
            const generated = r.stdout.slice(r.stdout.indexOf("# ---- generated"))
            if (signedApps) {
                assert.match(r.stdout, /^CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT=y$/m)
                assert.match(generated, /^# generated by firmware\/build\.sh .*--signed-apps$/m)
                assert.match(generated, /^# CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES is not set$/m)
                assert.doesNotMatch(generated, /SIGNING_KEY/)
            } else assert.doesNotMatch(r.stdout, /^CONFIG_SECURE_/m)
        }

        // uploaded: the app image (named as build.sh names it) and the sdkconfig it was built with
        const out = /--out (\S+)/.exec(command)?.[1]
        const [fwUpload] = stepUsing(firmware, "actions/upload-artifact")
        assert.equal(fwUpload?.with?.name, "firmware")
        assert.equal(fwUpload?.with?.["if-no-files-found"], "error")
        const fwPaths = String(fwUpload?.with?.path).split("\n").map(l => l.trim()).filter(Boolean)
        for (const p of fwPaths) assert.ok(p.startsWith(`${out}/`), `uploads from build.sh --out ${out}: ${p}`)
        assert.deepEqual(fwPaths.map(p => p.slice(`${out}/`.length)).sort(), ["devicescript-ota-v*-esp32s3.bin", "sdkconfig"])
        const buildSh = readFileSync(join(ROOT, "firmware", "build.sh"), "utf8")
        assert.ok(buildSh.includes(`cp "$SRC/sdkconfig" "$OUT_DIR/sdkconfig"`), "build.sh writes sdkconfig into --out")
        const appName = /^APP_NAME="([^"]+)"/m.exec(buildSh)?.[1]
        assert.ok(appName, "build.sh names the app image (APP_NAME=)")
        const built = appName.replace("$APP_VERSION", "1.2.3").replace("$TARGET", "esp32s3")
        const fwPath = fwPaths.find(p => p.endsWith(".bin"))!
        const glob = new RegExp("^" + fwPath.split("/").pop()!.split("*").map(s => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$")
        assert.match(built, glob, `${fwPath} matches build.sh's ${appName}`)
    })

    it("release.yml's pack job: environment release, npm ci --ignore-scripts, release:pack signs iff signing is on, uploads dist/", async () => {
        const release = await readWorkflow("release.yml")
        const { pack } = release.jobs
        assert.equal(pack.environment, "release")
        assert.deepEqual(pack.permissions, { contents: "read" })
        const installs = pack.steps.filter(s => /\bnpm (ci|install|i)\b/.test(s.run ?? "")).map(s => s.run!.trim())
        assert.deepEqual(installs, ["npm ci --ignore-scripts"], "no install scripts where the key is")
        assert.deepEqual(stepUsing(pack, "actions/download-artifact").map(s => s.with?.name).sort(), ["firmware", "program"])
        const step = pack.steps.find(s => s.run?.includes("npm run release:pack"))
        assert.ok(step?.run)
        const script = step.run
        assert.equal(step.env?.OTA_SIGNING_KEY, "${{ secrets.OTA_SIGNING_KEY }}")
        assert.equal(step.env?.OTA_SIGNED_APPS, "${{ vars.OTA_SIGNED_APPS }}")
        assert.match(script, /npm run release:pack -- "\$\{args\[@\]\}"/)
        for (const arg of ['--version "$TAG"', "--firmware", "--program artifacts/program/program.devs", "--out dist", "--sign-key env:OTA_SIGNING_KEY"])
            assert.ok(script.includes(arg), `release:pack gets ${arg}`)
        assert.match(script, /if \[\[ -f artifacts\/program\/program\.devs \]\]; then args\+=\(--program artifacts\/program\/program\.devs\); fi/)
        assert.match(script, /if \[\[ -n "\$OTA_SIGNING_KEY" \]\]; then args\+=\(--sign-key env:OTA_SIGNING_KEY\); fi/)

        // the script as the runner runs it, with a stand-in npm that records its arguments
        const signedConfig = "CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT=y\nCONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT=y\n"
        const plainConfig = "# CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT is not set\n"
        type Case = { what: string; sdkconfig?: string; vars: string; key: string; program?: boolean; images?: number; want: "sign" | "plain" | RegExp }
        const cases: Case[] = [
            { what: "signing on, key", sdkconfig: signedConfig, vars: "true", key: "PEM", want: "sign" },
            { what: "signing on, key, program", sdkconfig: signedConfig, vars: "true", key: "PEM", program: true, want: "sign" },
            { what: "signing off, no key", sdkconfig: plainConfig, vars: "", key: "", want: "plain" },
            { what: "signing off (false), no key, program", sdkconfig: plainConfig, vars: "false", key: "", program: true, want: "plain" },
            { what: "signing on, no key", sdkconfig: signedConfig, vars: "true", key: "", want: /OTA_SIGNED_APPS is true but the OTA_SIGNING_KEY secret .* not set: refusing/ },
            { what: "key, signing off", sdkconfig: plainConfig, vars: "", key: "PEM", want: /OTA_SIGNING_KEY secret is set but the OTA_SIGNED_APPS repository variable is not true/ },
            { what: "firmware verifies, variable off", sdkconfig: signedConfig, vars: "", key: "", want: /built with verifies-signatures=true but OTA_SIGNED_APPS/ },
            { what: "firmware does not verify, variable on", sdkconfig: plainConfig, vars: "true", key: "PEM", want: /built with verifies-signatures=false but OTA_SIGNED_APPS/ },
            { what: "no sdkconfig", vars: "", key: "", want: /sdkconfig missing/ },
            { what: "two images", sdkconfig: plainConfig, vars: "", key: "", images: 2, want: /expected one firmware image/ },
        ]
        const bin = mkdtempSync(join(tmp, "bin-"))
        writeFileSync(join(bin, "npm"), '#!/bin/bash\nprintf "%s\\n" "$@" >"$NPM_ARGS"\n', { mode: 0o755 })
        for (const c of cases) {
            const dir = mkdtempSync(join(tmp, "pack-"))
            mkdirSync(join(dir, "artifacts", "firmware"), { recursive: true })
            for (let i = 0; i < (c.images ?? 1); i++) writeFileSync(join(dir, "artifacts", "firmware", `devicescript-ota-v1.2.${3 + i}-esp32s3.bin`), "app")
            if (c.sdkconfig !== undefined) writeFileSync(join(dir, "artifacts", "firmware", "sdkconfig"), c.sdkconfig)
            if (c.program) {
                mkdirSync(join(dir, "artifacts", "program"), { recursive: true })
                writeFileSync(join(dir, "artifacts", "program", "program.devs"), "devs")
            }
            const npmArgs = join(dir, "npm-args")
            const r = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", script], {
                cwd: dir,
                env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, NPM_ARGS: npmArgs, TAG: "v1.2.3", OTA_SIGNED_APPS: c.vars, OTA_SIGNING_KEY: c.key },
                encoding: "utf8",
            })
            if (c.want instanceof RegExp) {
                assert.notEqual(r.status, 0, `${c.what}: packed`)
                assert.match(r.stdout, /::error::/, `${c.what}: says why`)
                assert.match(r.stdout, c.want, c.what)
                assert.ok(!existsSync(npmArgs), `${c.what}: release:pack not run`)
                assert.doesNotMatch(r.stdout + r.stderr, /PEM/, `${c.what}: the key is not printed`)
                continue
            }
            assert.equal(r.status, 0, `${c.what}: ${r.stdout}${r.stderr}`)
            const args = readFileSync(npmArgs, "utf8").trimEnd().split("\n")
            const want = ["run", "release:pack", "--", "--version", "v1.2.3", "--firmware", "artifacts/firmware/devicescript-ota-v1.2.3-esp32s3.bin", "--out", "dist"]
            if (c.program) want.push("--program", "artifacts/program/program.devs")
            if (c.want === "sign") want.push("--sign-key", "env:OTA_SIGNING_KEY")
            assert.deepEqual(args, want, c.what)
        }

        const [upload] = stepUsing(pack, "actions/upload-artifact")
        assert.equal(upload?.with?.name, "release")
        assert.equal(upload?.with?.["if-no-files-found"], "error")
        assert.deepEqual(
            String(upload?.with?.path).split("\n").map(l => l.trim()).filter(Boolean).sort(),
            ["dist/RELEASE_NOTES.md", "dist/SHA256SUMS", "dist/firmware-esp32s3.bin", "dist/program.devs"],
        )
        assert.ok(pack.steps.indexOf(upload) > pack.steps.indexOf(step), "uploaded after packing")
    })

    it("release.yml's publish job: downloads the release artifact and runs gh release create; no checkout, no npm, no secret", async () => {
        const release = await readWorkflow("release.yml")
        const { publish } = release.jobs
        assert.deepEqual(publish.permissions, { contents: "write" })
        assert.equal(publish.environment, undefined)
        const uses = publish.steps.flatMap(s => (s.uses ? [s.uses.split("@")[0]] : []))
        assert.deepEqual(uses, ["actions/download-artifact"], "no checkout, no setup-node: only the artifact")
        const [download] = stepUsing(publish, "actions/download-artifact")
        assert.deepEqual({ name: download.with?.name, path: download.with?.path }, { name: "release", path: "dist" })
        assert.equal(download.with?.["github-token"], undefined)
        for (const s of publish.steps) {
            assert.doesNotMatch(s.run ?? "", /\b(npm|npx|node|tsx|git)\b/, `publish runs nothing of the repository: ${s.name ?? s.run}`)
        }
        const text = JSON.stringify(publish)
        assert.doesNotMatch(text, /secrets\./, "no secret")
        assert.doesNotMatch(text, /vars\./)
        assert.equal((text.match(/github\.token/g) ?? []).length, 1, "the token, once")
        assert.ok(publish.env === undefined, "no job env")

        const gh = publish.steps.find(s => s.run?.includes("gh release create"))
        assert.ok(gh?.run)
        assert.deepEqual(gh.env, {
            GH_TOKEN: "${{ github.token }}",
            GH_REPO: "${{ github.repository }}",
            PRERELEASE: "${{ needs.check.outputs.prerelease }}",
        })
        assert.match(gh.run, /assets=\(dist\/firmware-esp32s3\.bin\)\n\s*if \[\[ -f dist\/program\.devs \]\]; then assets\+=\(dist\/program\.devs\); fi/)
        assert.match(
            gh.run.replace(/\\\n\s*/g, ""),
            /gh release create "\$TAG" "\$\{assets\[@\]\}" dist\/SHA256SUMS --notes-file dist\/RELEASE_NOTES\.md --verify-tag "\$\{flags\[@\]\}"/,
        )
        assert.match(gh.run, /\[\[ "\$PRERELEASE" == true \]\]; then flags\+=\(--prerelease\)/)

        // the checksum step before it: what pack wrote is what gets published
        const sums = publish.steps.find(s => s.run?.includes("sha256sum"))
        assert.ok(sums?.run && publish.steps.indexOf(sums) < publish.steps.indexOf(gh))
        const dir = mkdtempSync(join(tmp, "publish-"))
        mkdirSync(join(dir, "dist"))
        writeFileSync(join(dir, "dist", "firmware-esp32s3.bin"), "app")
        const sum = (s: string) => createHash("sha256").update(s).digest("hex")
        writeFileSync(join(dir, "dist", "SHA256SUMS"), `${sum("app")}  firmware-esp32s3.bin\n`)
        const check = () => spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", sums.run!], { cwd: dir, encoding: "utf8" })
        assert.equal(check().status, 0, check().stderr)
        writeFileSync(join(dir, "dist", "firmware-esp32s3.bin"), "other")
        assert.notEqual(check().status, 0, "a changed asset is refused")
    })

    it("the signing key reaches one step: release:pack in the pack job (environment release), never a job that installs with scripts", async () => {
        const release = await readWorkflow("release.yml")
        const secret = /secrets\.OTA_SIGNING_KEY/
        assert.ok(!secret.test(JSON.stringify(release.env ?? {})), "not in the workflow's env")
        for (const [id, job] of Object.entries(release.jobs)) assert.ok(!secret.test(JSON.stringify(job.env ?? {})), `not in job ${id}'s env`)
        const holders = allSteps(release).filter(([, s]) => secret.test(JSON.stringify(s)))
        assert.deepEqual(holders.map(([id, s]) => `${id}: ${s.name}`), ["pack: npm run release:pack (dist/)"])
        // no other secret anywhere in release.yml
        for (const [id, job] of Object.entries(release.jobs)) {
            const names = [...JSON.stringify(job).matchAll(/secrets\.(\w+)/g)].map(m => m[1])
            assert.deepEqual(names, id === "pack" ? ["OTA_SIGNING_KEY"] : [], `secrets of job ${id}`)
        }
        const [, s] = holders[0]
        assert.equal(s.env?.OTA_SIGNING_KEY, "${{ secrets.OTA_SIGNING_KEY }}", "as a step env variable")
        assert.ok(!/\bnpm ci\b/.test(s.run ?? ""), "not where install scripts run")
        // only the pack job has an environment (where the key is an environment secret)
        for (const [id, job] of Object.entries(release.jobs)) assert.equal(job.environment, id === "pack" ? "release" : undefined, `environment of ${id}`)
        // every npm install in the pack job is without scripts
        for (const r of runs({ ...release, jobs: { pack: release.jobs.pack } }))
            for (const m of r.matchAll(/\bnpm (?:ci|install|i)\b[^\n]*/g)) assert.match(m[0], /--ignore-scripts/, `pack: ${m[0]}`)
        // the key's value is never printed, and never written to a file
        for (const [id, step] of allSteps(release)) {
            const lines = (step.run ?? "").split("\n").filter(l => /\$\{?OTA_SIGNING_KEY\b/.test(l))
            for (const l of lines) assert.doesNotMatch(l, /\b(echo|printf|cat|tee)\b|>/, `${id}: ${l.trim()}`)
        }
    })

    it("ci.yml runs the README's set-up and test on push and pull requests, on a Node that package.json's engines allows", async () => {
        const ci = await readWorkflow("ci.yml")
        assert.ok(ci.on && typeof ci.on === "object" && "push" in ci.on && "pull_request" in ci.on, "on push and pull_request")
        const all = runs(ci).map(r => r.trim())
        assert.ok(all.indexOf("npm ci") >= 0, "npm ci")
        assert.ok(all.indexOf("npm test") > all.indexOf("npm ci"), "npm test after npm ci")
        assert.ok(all.some(r => r.includes("sudo apt-get install -y libssl-dev")), "libssl-dev, as .ci/run")
        assert.ok(readFileSync(join(ROOT, ".ci", "run"), "utf8").includes("apt-get install -y libssl-dev"), ".ci/run still installs it")
        const concurrency = ci.concurrency as Record<string, Plain>
        assert.match(String(concurrency.group), /github\.ref/)
        assert.equal(concurrency["cancel-in-progress"], "${{ github.event_name == 'pull_request' }}")

        const engines = packageJson().engines.node
        const versions = new Set<string>()
        for (const f of ["ci.yml", "release.yml"]) {
            const wf = await readWorkflow(f)
            for (const [id, s] of allSteps(wf).filter(([, s]) => s.uses?.startsWith("actions/setup-node@"))) {
                const v = String(s.with?.["node-version"])
                assert.ok(satisfiesEngines(v, engines), `${f} ${id}: node-version ${v} does not satisfy engines ${engines}`)
                versions.add(v)
            }
        }
        assert.equal(versions.size, 1, `one Node version in every workflow: ${[...versions].join(", ")}`)
        assert.equal(satisfiesEngines("20.14.x", ">=20.15"), false)
        assert.equal(satisfiesEngines("20.15.x", ">=20.15"), true)
        assert.equal(satisfiesEngines("22", ">=20.15"), true)
    })

    it("the npm scripts the workflows call exist in package.json", async () => {
        const scripts = packageJson().scripts
        const called = new Set<string>()
        for (const f of readdirSync(WORKFLOWS).filter(f => /\.ya?ml$/.test(f))) {
            const wf = await readWorkflow(f)
            for (const r of runs(wf)) {
                for (const m of r.matchAll(/\bnpm run ([\w:-]+)/g)) called.add(m[1])
                for (const m of r.matchAll(/\bnpm (test|start)\b/g)) called.add(m[1])
            }
        }
        assert.ok(called.has("test") && called.has("release:pack"), `the workflows call npm test and release:pack: ${[...called]}`)
        const missing = [...called].filter(s => !(s in scripts))
        assert.deepEqual(missing, [], `workflows call npm scripts that package.json lacks: ${missing.join(", ")}`)
    })

    it("what the workflows run with npx is a bin of a pinned devDependency, not a download", async () => {
        const deps = packageJson().devDependencies
        const bins = new Map<string, string>()
        for (const [dep, version] of Object.entries(deps)) {
            assert.match(version, /^\d+\.\d+\.\d+$/, `${dep} is pinned to an exact version`)
            const pkg = JSON.parse(readFileSync(join(ROOT, "node_modules", dep, "package.json"), "utf8"))
            const bin: Record<string, string> = typeof pkg.bin === "string" ? { [dep.split("/").pop()!]: pkg.bin } : (pkg.bin ?? {})
            for (const name of Object.keys(bin)) bins.set(name, dep)
        }
        const used = new Set<string>()
        for (const f of readdirSync(WORKFLOWS).filter(f => /\.ya?ml$/.test(f)))
            for (const r of runs(await readWorkflow(f))) for (const m of r.matchAll(/\bnpx ([\w@/.-]+)/g)) used.add(m[1])
        assert.ok(used.has("devicescript") && used.has("tsx"), `npx devicescript and npx tsx: ${[...used]}`)
        const unknown = [...used].filter(b => !bins.has(b))
        assert.deepEqual(unknown, [], `npx runs what no devDependency provides: ${unknown.join(", ")}`)
    })
})
