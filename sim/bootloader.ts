// What ESP-IDF keeps in flash on top of the partition table: otadata (esp_ota_select_entry_t x2)
// and the bootloader's slot selection and rollback (bootloader_utility.c,
// bootloader_common_loader.c, esp_ota_ops.c), modelled with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y
// and no factory partition.
import { crc32 } from "node:zlib"
import { checkAppImage, ESP32S3_CHIP_ID } from "../tools/esp-image"
import { SECTOR_SIZE, SimFlash } from "./flash"

// otadata: two esp_ota_select_entry_t, at otadata+0 and otadata+0x1000

export const OtaImgState = {
    New: 0,
    PendingVerify: 1,
    Valid: 2,
    Invalid: 3,
    Aborted: 4,
    Undefined: 0xffffffff,
} as const

export interface OtaSelectEntry {
    seq: number
    seqLabel: Buffer // 20 bytes, unused by ESP-IDF; kept as found
    state: number
    crc: number
}

const OTA_ENTRY_LEN = 32
const UINT32_MAX = 0xffffffff

/** bootloader_common_ota_select_crc = esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4), which is zlib's crc32 seeded with 0xFFFFFFFF. */
export function otaSelectCrc(seq: number): number {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(seq >>> 0)
    return crc32(b, UINT32_MAX) >>> 0
}

export function encodeOtaSelectEntry(e: OtaSelectEntry): Buffer {
    const b = Buffer.alloc(OTA_ENTRY_LEN, 0xff)
    b.writeUInt32LE(e.seq >>> 0, 0)
    e.seqLabel.copy(b, 4, 0, 20)
    b.writeUInt32LE(e.state >>> 0, 24)
    b.writeUInt32LE(e.crc >>> 0, 28)
    return b
}

export function decodeOtaSelectEntry(b: Buffer): OtaSelectEntry {
    return {
        seq: b.readUInt32LE(0),
        seqLabel: Buffer.from(b.subarray(4, 24)),
        state: b.readUInt32LE(24),
        crc: b.readUInt32LE(28),
    }
}

export function readOtadata(flash: SimFlash): [OtaSelectEntry, OtaSelectEntry] {
    const { offset } = flash.otadataPartition()
    return [0, 1].map(i => decodeOtaSelectEntry(flash.read(offset + i * SECTOR_SIZE, OTA_ENTRY_LEN))) as [
        OtaSelectEntry,
        OtaSelectEntry,
    ]
}

/** write_otadata / rewrite_ota_seq: erase that entry's sector, write the 32 bytes (one power-cut-safe step). */
function writeOtadataEntry(flash: SimFlash, index: number, e: OtaSelectEntry) {
    const sector = flash.otadataPartition().offset + index * SECTOR_SIZE
    flash.eraseSector(sector)
    flash.write(sector, encodeOtaSelectEntry(e))
}

const crcOk = (e: OtaSelectEntry) => e.crc === otaSelectCrc(e.seq)
/** bootloader_common_ota_select_invalid */
const entryInvalid = (e: OtaSelectEntry) =>
    e.seq === UINT32_MAX || e.state === OtaImgState.Invalid || e.state === OtaImgState.Aborted
/** bootloader_common_ota_select_valid */
const entryValid = (e: OtaSelectEntry) => !entryInvalid(e) && crcOk(e)
/** The slot an entry selects: (seq - 1) % slot count, in uint32 arithmetic. */
const slotOf = (e: OtaSelectEntry, slotCount: number) => ((e.seq - 1) >>> 0) % slotCount

/** bootloader_common_get_active_otadata: the valid entry with the highest seq (entry 0 on a tie), or -1. */
export function activeOtadata(entries: OtaSelectEntry[]): number {
    const v = entries.map(entryValid)
    if (v[0] && v[1]) return entries[0].seq >= entries[1].seq ? 0 : 1
    return v[0] ? 0 : v[1] ? 1 : -1
}

/** esp_ota_get_boot_partition: the slot otadata selects (no image check); 0 when otadata is empty. */
export function bootSlot(flash: SimFlash): number {
    const entries = readOtadata(flash)
    const active = activeOtadata(entries)
    return active < 0 ? 0 : slotOf(entries[active], flash.otaSlots().length)
}

/** esp_ota_get_state_partition: state of the first entry with a good CRC that selects `slot`. */
export function otaState(flash: SimFlash, slot: number): number | undefined {
    const count = flash.otaSlots().length
    return readOtadata(flash).find(e => crcOk(e) && slotOf(e, count) === slot)?.state
}

function slotImage(flash: SimFlash, slot: number, chipId: number) {
    const p = flash.otaSlots()[slot]
    return checkAppImage(flash.read(p.offset, p.size), chipId)
}

export interface BootResult {
    slot: 0 | 1
    label: "ota_0" | "ota_1"
    version: string
    /** Booted for the first time after an update and not confirmed: the next reset rolls back. */
    pendingVerify: boolean
    /** The newest otadata entry was abandoned (aborted by the bootloader or rejected by the app), so an older image runs. */
    rolledBack: boolean
    /** The slot otadata selected held no valid image and the bootloader booted another one. */
    fellBack: boolean
}

/**
 * One run of the second-stage bootloader (bootloader_utility_get_selected_boot_partition +
 * bootloader_utility_load_boot_image): abort an unconfirmed image, pick the newest valid
 * entry, mark a NEW image PENDING_VERIFY, then boot the first slot whose image validates,
 * starting from the selected one.
 */
export function boot(flash: SimFlash, options: { chipId?: number } = {}): BootResult {
    return runBootloader(flash, options.chipId ?? ESP32S3_CHIP_ID, false)
}

/**
 * What runs now, as the last boot left it, without writing anything: boot() minus its
 * otadata updates, so an image that is NEW or PENDING_VERIFY counts as running unconfirmed.
 */
export function peekBoot(flash: SimFlash, options: { chipId?: number } = {}): BootResult {
    return runBootloader(flash, options.chipId ?? ESP32S3_CHIP_ID, true)
}

function runBootloader(flash: SimFlash, chipId: number, dryRun: boolean): BootResult {
    const slots = flash.otaSlots()
    if (slots.length === 0) throw new Error("no OTA app partitions")
    const entries = readOtadata(flash)
    const update = (i: number) => dryRun || writeOtadataEntry(flash, i, entries[i])

    // rollback: an image still PENDING_VERIFY at boot was never confirmed
    entries.forEach((e, i) => {
        if (e.state === OtaImgState.PendingVerify && !dryRun) {
            e.state = OtaImgState.Aborted
            update(i)
        }
    })

    let start = 0
    let initialOtadata = false
    if (entryInvalid(entries[0]) && entryInvalid(entries[1])) {
        // no factory partition: try ota_0; if otadata is blank, record that ota_0 runs
        initialOtadata = entries.every(e => e.seq === UINT32_MAX || !crcOk(e))
    } else {
        const active = activeOtadata(entries)
        if (active >= 0) {
            start = slotOf(entries[active], slots.length)
            if (entries[active].state === OtaImgState.New) {
                entries[active].state = OtaImgState.PendingVerify
                update(active)
            }
        }
    }

    // the selected slot, then downwards, then upwards (load_boot_image)
    const order = [start]
    for (let i = start - 1; i >= 0; i--) order.push(i)
    for (let i = start + 1; i < slots.length; i++) order.push(i)
    for (const slot of order) {
        const check = slotImage(flash, slot, chipId)
        if (!check.ok) continue
        if (initialOtadata && !dryRun) {
            // set_actual_ota_seq
            const seq = slot + 1
            writeOtadataEntry(flash, 0, { seq, seqLabel: Buffer.alloc(20, 0xff), state: OtaImgState.Valid, crc: otaSelectCrc(seq) })
        }
        const state = otaState(flash, slot)
        return {
            slot: slot as 0 | 1,
            label: slots[slot].label as "ota_0" | "ota_1",
            version: check.info.appDesc?.version ?? "",
            pendingVerify: state === OtaImgState.PendingVerify || (dryRun && state === OtaImgState.New),
            rolledBack: newestAbandoned(flash),
            fellBack: slot !== start,
        }
    }
    throw new Error("no bootable app partition")
}

/** The entry with the highest seq and a good CRC is ABORTED or INVALID: the last update did not stick. */
function newestAbandoned(flash: SimFlash): boolean {
    const entries = readOtadata(flash).filter(e => e.seq !== UINT32_MAX && crcOk(e))
    if (entries.length === 0) return false
    const newest = entries.reduce((a, b) => (b.seq > a.seq ? b : a))
    return newest.state === OtaImgState.Aborted || newest.state === OtaImgState.Invalid
}

/**
 * esp_ota_set_boot_partition for an OTA slot: validates the image in it, then writes the
 * entry that is not active with the smallest seq >= the active seq that selects `slot`,
 * in state NEW (rollback enabled). Returns the otadata entry index written.
 */
export function setBootPartition(flash: SimFlash, slot: number, options: { chipId?: number } = {}): number {
    const count = flash.otaSlots().length
    if (!Number.isInteger(slot) || slot < 0 || slot >= count) throw new Error(`no OTA slot ${slot}`)
    const check = slotImage(flash, slot, options.chipId ?? ESP32S3_CHIP_ID)
    if (!check.ok) throw new Error(`ota_${slot}: ${check.message}`)
    const entries = readOtadata(flash)
    const active = activeOtadata(entries)
    let next = 0
    let seq = slot + 1
    if (active >= 0) {
        // esp_rewrite_ota_data
        const base = (slot + 1) % count
        let i = 0
        while (entries[active].seq > base + i * count) i++
        seq = base + i * count
        next = active ^ 1
    }
    writeOtadataEntry(flash, next, { seq, seqLabel: entries[next].seqLabel, state: OtaImgState.New, crc: otaSelectCrc(seq) })
    return next
}

/** Erases one otadata entry (its sector), e.g. to take back a boot switch that was not rebooted into yet. */
export function eraseOtadataEntry(flash: SimFlash, index: number) {
    flash.eraseSector(flash.otadataPartition().offset + index * SECTOR_SIZE)
}

/** esp_ota_mark_app_valid_cancel_rollback: the active entry becomes VALID (no write if it already is). */
export function markValid(flash: SimFlash) {
    const entries = readOtadata(flash)
    const active = activeOtadata(entries)
    if (active < 0) throw new Error("no active otadata entry (running firmware is not an OTA app)")
    if (entries[active].state === OtaImgState.Valid) return
    entries[active].state = OtaImgState.Valid
    writeOtadataEntry(flash, active, entries[active])
}

/** esp_ota_check_rollback_is_possible: the other entry is valid and its slot holds a valid image. */
export function rollbackPossible(flash: SimFlash, options: { chipId?: number } = {}): boolean {
    const entries = readOtadata(flash)
    const active = activeOtadata(entries)
    if (active < 0) return false
    const last = entries[active ^ 1]
    if (!entryValid(last)) return false
    return slotImage(flash, slotOf(last, flash.otaSlots().length), options.chipId ?? ESP32S3_CHIP_ID).ok
}

/**
 * esp_ota_mark_app_invalid_rollback_and_reboot without the reboot (the caller resets):
 * the active entry becomes INVALID so the next boot picks the previous one.
 */
export function markInvalidAndRollback(flash: SimFlash, options: { chipId?: number } = {}) {
    const entries = readOtadata(flash)
    const active = activeOtadata(entries)
    if (active < 0) throw new Error("no active otadata entry (running firmware is not an OTA app)")
    if (!rollbackPossible(flash, options)) throw new Error("rollback is not possible: no other valid app")
    entries[active].state = OtaImgState.Invalid
    writeOtadataEntry(flash, active, entries[active])
}
