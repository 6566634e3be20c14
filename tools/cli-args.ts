// The command-line front of the release tools: node:util parseArgs with --help and a
// usage text, the same way for each.
import { parseArgs } from "node:util"

export type CliValues = Record<string, string | boolean | undefined>

/**
 * Parses `argv` against `options` (string options by name, `boolean` ones listed in
 * `flags`; --help/-h is added). Returns the values, or the exit code to end with: 0 after
 * printing `usage` for --help, 2 after an unknown option or a missing `required` one.
 */
export function parseCommandLine(
    argv: string[],
    o: { strings: string[]; flags?: string[]; required: string[]; usage: string },
    log: (line: string) => void,
    error: (line: string) => void
): CliValues | number {
    const options: Record<string, { type: "string" | "boolean"; short?: string }> = { help: { type: "boolean", short: "h" } }
    for (const name of o.strings) options[name] = { type: "string" }
    for (const name of o.flags ?? []) options[name] = { type: "boolean" }
    let values: CliValues
    try {
        values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values
    } catch (e) {
        error(`${(e as Error).message}\n${o.usage}`)
        return 2
    }
    if (values.help) {
        log(o.usage)
        return 0
    }
    const missing = o.required.filter(name => typeof values[name] !== "string")
    if (missing.length) {
        error(`${missing.map(m => `--${m}`).join(" and ")} ${missing.length > 1 ? "are" : "is"} required\n${o.usage}`)
        return 2
    }
    return values
}
