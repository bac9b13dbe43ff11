#!/usr/bin/env python3
"""An emulated SEV-SNP machine for the SNP build of svsm-image: it loads the IGVM file the way
an IGVM loader does and runs the SVSM's vCPU 0 at VMPL0 on a CPU emulator (unicorn), standing
in for what the hardware and the hypervisor do:

- the CPU: PVALIDATE and RMPADJUST against an RMP model (per 4 KiB page: shared or private,
  validated, VMPL1-3 permissions, the VMSA bit); VMGEXIT; the GHCB MSR; CPUID raising #VC
  (delivered through the image's IDT on its IST stack, as the hardware does); port I/O and any
  other intercepted instruction at VMPL0 is a violation;
- the memory encryption: every guest virtual address is translated by walking the image's own
  page tables with its C-bit; a private access to a page that is not private and validated, or a
  shared access to a page that is not shared, is a violation (on hardware: #VC or a fault);
- the hypervisor: the GHCB MSR protocol (SEV information, registration, page-state change, Run
  VMPL, HV features, termination) and GHCB events (page-state change, port I/O, AP creation,
  guest requests);
- the PSP: guest messages under VMPCK0 (AES-256-GCM, sequence numbers), MSG_REPORT_REQ with a
  report carrying the request's data (signed with a throwaway key: the SVSM does not check its
  own reports) and MSG_KEY_REQ;
- the guest at VMPL1: on each Run VMPL it checks what the SVSM set up for it and issues the next
  SVSM call of a script through its calling area and VMSA, exactly as Linux does.

It is a test instrument, not a model of every SNP rule: what it checks is listed above.
Output: one JSON document (outcome, termination reason, COM1 log, the calls and their results,
violations). Usage: snp_emu.py --igvm FILE [--scenario NAME] [--timeout S].
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import time

import unicorn
import unicorn.x86_const as X
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PAGE = 4096
RAM_TOP = 256 << 20  # guest RAM [0, 256 MiB)
CBIT = 51
GHCB_MSR = 0xC0010130
EFER = 0xC0000080
EFER_SVME = 1 << 12
SECRETS_VMPCK0 = 0x20

# GHCB page fields (GHCB spec 2, table 1).
G_RAX, G_RBX, G_RCX, G_RDX = 0x1F8, 0x318, 0x308, 0x310
G_EXIT_CODE, G_INFO1, G_INFO2, G_SCRATCH = 0x390, 0x398, 0x3A0, 0x3A8
G_SHARED = 0x800
G_VALID = 0xFF0

# VMSA fields.
V_EFER, V_RAX, V_RCX, V_RDX, V_R8, V_R9 = 0xD0, 0x1F8, 0x308, 0x310, 0x340, 0x348
V_RIP, V_RBX, V_SEV_FEATURES, V_EXIT_CODE, V_VMPL = 0x178, 0x318, 0x3B0, 0x3C0, 0xCA


class Stop(Exception):
    pass


def u64(b, off=0):
    return struct.unpack_from("<Q", b, off)[0]


def u32(b, off=0):
    return struct.unpack_from("<I", b, off)[0]


def cpuid_page(cbit, invlpgb=True):
    """A CPUID page with the leaves OpenSSL and the SVSM ask for (features TCG implements)."""
    leaves = [
        (0x0, 0, (0x10, 0x68747541, 0x444D4163, 0x69746E65)),  # AuthenticAMD
        (0x1, 0, (0x00A00F11, 0x00000800, 0x40B82203, 0x078BFBFF)),  # SSE..SSE4.2, AES, RDRAND
        (0x7, 0, (0, 0x00000000, 0, 0)),
        (0x80000000, 0, (0x8000001F, 0x68747541, 0x444D4163, 0x69746E65)),
        (0x80000008, 0, (0x3030, (1 << 3) if invlpgb else 0, 0, 0)),  # 48 bits; INVLPGB
        (0x80000001, 0, (0x00A00F11, 0, 0x00000001, 0x2C100800)),
        (0x8000001F, 0, (0x1B, (1 << 6) | cbit, 0, 0)),
    ]
    page = bytearray(PAGE)
    struct.pack_into("<I", page, 0, len(leaves))
    for i, (leaf, sub, out) in enumerate(leaves):
        o = 16 + 48 * i
        struct.pack_into("<II", page, o, leaf, sub)
        struct.pack_into("<IIII", page, o + 24, *out)
    return page


class Rmp:
    """Per-page RMP state."""

    def __init__(self):
        self.private = set()
        self.validated = set()
        self.perms = {}  # page -> [vmpl1, vmpl2, vmpl3]
        self.vmsa = set()

    def launch(self, gpa):
        p = gpa // PAGE
        self.private.add(p)
        self.validated.add(p)


class Machine:
    def __init__(self, igvm, scenario):
        self.scenario = scenario
        self.rmp = Rmp()
        self.ghcb_msr = 0
        self.ghcb_gpa = None
        self.log = bytearray()
        self.violations = []
        self.calls = []
        self.events = []
        self.notes = []
        self.walk_cache = {}
        self.fills = 0
        self.pending_flush = False
        self.cr3 = None
        self.terminated = None
        self.done = False
        self.vmpck0 = os.urandom(32)
        self.psp_seqno = 0
        self.ap_created = []
        self.pit_reads = 0
        self.run_vmpl_count = 0
        self.guest_step = 0
        # Unicorn decodes by the engine's mode, not by CS: the 32-bit entry runs on a 32-bit
        # engine up to its far return into 64-bit code, then the state moves to a 64-bit engine.
        self.mode64 = False
        self.uc = self.new_engine(unicorn.UC_MODE_32)
        self.load(igvm)
        self.uc.reg_write(X.UC_X86_REG_EIP, self.entry_rip)
        self.uc.reg_write(X.UC_X86_REG_EBX, self.entry_rbx)
        self.install_hooks()

    def new_engine(self, mode):
        uc = unicorn.Uc(unicorn.UC_ARCH_X86, mode)
        uc.ctl_set_cpu_model(X.UC_CPU_X86_EPYC_ROME)
        uc.mem_map(0, RAM_TOP)
        uc.mem_map(0xFF000000, 0x1000000)
        return uc

    def install_hooks(self):
        uc = self.uc
        uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
        uc.hook_add(unicorn.UC_HOOK_TLB_FILL, self.tlb_fill)
        uc.hook_add(unicorn.UC_HOOK_INSN, self.on_native_cpuid, None, 1, 0, X.UC_X86_INS_CPUID)
        uc.hook_add(unicorn.UC_HOOK_INSN, self.on_port_io, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(unicorn.UC_HOOK_INSN, self.on_port_io, None, 1, 0, X.UC_X86_INS_OUT)
        uc.hook_add(unicorn.UC_HOOK_INTR, self.on_interrupt)
        uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self.on_unmapped)
        self.hook_special_instructions()
        if not self.mode64:
            # The far return into 64-bit code ends the 32-bit engine's part.
            start = self.text[0]
            code = self.read_phys(start, 0x400)
            i = code.find(b"\xcb")
            while i >= 0:
                uc.hook_add(unicorn.UC_HOOK_CODE, self.on_retf, None, start + i, start + i)
                i = code.find(b"\xcb", i + 1)

    def on_retf(self, uc, address, size, _data):
        if size != 1:
            return
        esp = uc.reg_read(X.UC_X86_REG_ESP)
        svsm = (self.boot_info["svsm_base"], self.boot_info["svsm_base"] + self.boot_info["svsm_size"])
        if not svsm[0] <= esp - 8 < svsm[1]:
            self.violation(f"the far return uses a stack at {esp:#x}, outside the SVSM's memory")
            return
        gpa, _ = self.walk(esp)
        target, cs = struct.unpack("<II", self.read_phys(gpa, 8))
        self.long_mode = {
            "rip": target, "cs": cs & 0xFFFF, "rsp": esp + 8,
            "cr0": uc.reg_read(X.UC_X86_REG_CR0), "cr3": uc.reg_read(X.UC_X86_REG_CR3),
            "cr4": uc.reg_read(X.UC_X86_REG_CR4), "efer": uc.msr_read(EFER),
            "gdtr": uc.reg_read(X.UC_X86_REG_GDTR),
            "regs": {r: uc.reg_read(getattr(X, "UC_X86_REG_E" + r)) for r in
                     ("AX", "BX", "CX", "DX", "SI", "DI", "BP")},
        }
        uc.emu_stop()

    def switch_to_64(self):
        """The state at the far return, moved to a 64-bit engine."""
        lm = self.long_mode
        old = self.uc
        self.uc = uc = self.new_engine(unicorn.UC_MODE_64)
        self.mode64 = True
        for gpa in sorted(self.rmp.private):
            gpa *= PAGE
            uc.mem_write(gpa, bytes(old.mem_read(gpa, PAGE)))
        uc.mem_write(0x1000, bytes(old.mem_read(0x1000, PAGE)))
        uc.reg_write(X.UC_X86_REG_CR4, lm["cr4"])
        uc.reg_write(X.UC_X86_REG_CR3, lm["cr3"])
        self.cr3 = lm["cr3"]
        uc.msr_write(EFER, lm["efer"] | (1 << 10))
        uc.reg_write(X.UC_X86_REG_CR0, lm["cr0"])
        uc.reg_write(X.UC_X86_REG_GDTR, lm["gdtr"])
        uc.reg_write(X.UC_X86_REG_CS, lm["cs"])
        for r, v in lm["regs"].items():
            uc.reg_write(getattr(X, "UC_X86_REG_R" + r), v)
        uc.reg_write(X.UC_X86_REG_RSP, lm["rsp"])
        uc.reg_write(X.UC_X86_REG_RIP, lm["rip"])
        self.install_hooks()

    # --- the IGVM loader -------------------------------------------------------------------

    def load(self, data):
        magic, _ver, vh_off, vh_size = struct.unpack_from("<4I", data, 0)
        assert magic == 0x4D564749, "not an IGVM file"
        areas = {}
        off, end = vh_off, vh_off + vh_size
        self.image_pages = []
        while off < end:
            typ, length = struct.unpack_from("<II", data, off)
            p = data[off + 8 : off + 8 + length]
            off += 8 + ((length + 7) & ~7)
            if typ == 0x302:  # PAGE_DATA
                gpa, _mask, foff, _flags, dtype = struct.unpack_from("<QIIIH", p)
                if dtype == 1:  # SECRETS
                    page = self.secrets_page()
                    self.secrets_gpa = gpa
                elif dtype == 2:  # CPUID
                    cbit = 20 if self.scenario == "no-cbit" else CBIT
                    page = cpuid_page(cbit, invlpgb=self.scenario != "no-invlpgb")
                    self.cpuid_gpa = gpa
                else:
                    page = data[foff : foff + PAGE] if foff else b""
                    page = bytes(page) + bytes(PAGE - len(page))
                    self.image_pages.append(gpa)
                self.uc.mem_write(gpa, bytes(page))
                self.rmp.launch(gpa)
            elif typ == 0x301:  # PARAMETER_AREA
                nbytes, index, _foff = struct.unpack_from("<QII", p)
                areas[index] = bytearray(nbytes)
            elif typ == 0x30C:  # MEMORY_MAP
                index, boff = struct.unpack_from("<II", p)
                entries = [(0, RAM_TOP // PAGE, 0)]
                if self.scenario == "bad-memory-map":
                    entries = [(0x10000, 16, 0), (0, 16, 0)]
                for i, (start, pages, kind) in enumerate(entries):
                    struct.pack_into("<QQH", areas[index], boff + 24 * i, start, pages, kind)
            elif typ == 0x307:  # VP_COUNT
                index, boff = struct.unpack_from("<II", p)
                struct.pack_into("<I", areas[index], boff, 1)
            elif typ == 0x303:  # PARAMETER_INSERT
                gpa, _mask, index = struct.unpack_from("<QII", p)
                self.uc.mem_write(gpa, bytes(areas[index]))
                self.rmp.launch(gpa)
            elif typ == 0x304:  # VP_CONTEXT
                _gpa, _mask, foff, vp = struct.unpack_from("<QIIH", p)
                assert vp == 0
                vmsa = data[foff : foff + PAGE]
                self.entry_rip = u64(vmsa, V_RIP)
                self.entry_rbx = u64(vmsa, V_RBX)
                self.sev_features = u64(vmsa, V_SEV_FEATURES)
        self.image_pages.sort()
        # The image: from its first page to the boot information page (scanned for the
        # instructions the machine must emulate).
        self.text = (self.image_pages[0], self.entry_rbx - PAGE)

    def secrets_page(self):
        page = bytearray(PAGE)
        struct.pack_into("<I", page, 0, 3)  # VERSION
        page[SECRETS_VMPCK0 : SECRETS_VMPCK0 + 32] = self.vmpck0
        for i in range(1, 4):
            page[SECRETS_VMPCK0 + 32 * i : SECRETS_VMPCK0 + 32 * (i + 1)] = os.urandom(32)
        return page

    # --- memory: page walk with the C-bit, RMP checks ----------------------------------------

    def read_phys(self, gpa, n):
        return bytes(self.uc.mem_read(gpa, n))

    def walk(self, va):
        """(gpa, private) through the image's page tables, or None. In 64-bit mode walks are
        cached per page: the image builds its tables once (later it only unmaps its stack
        guard, which is never accessed); the cache is dropped with every TLB flush and when
        CR3 changes (checked every 4096 fills)."""
        if not self.mode64:
            if not self.uc.reg_read(X.UC_X86_REG_CR0) & (1 << 31):
                return va, True
            return self.walk_tables(va)
        key = va >> 12
        hit = self.walk_cache.get(key)
        if hit is not None:
            gpa_page, private = hit
            return gpa_page | (va & 0xFFF), private
        t = self.walk_tables(va)
        if t is not None:
            self.walk_cache[key] = (t[0] & ~0xFFF, t[1])
        return t

    def walk_tables(self, va):
        cmask = 1 << CBIT
        addr_mask = 0x000F_FFFF_FFFF_F000 & ~cmask
        table = self.uc.reg_read(X.UC_X86_REG_CR3) & addr_mask
        for level, shift in ((4, 39), (3, 30), (2, 21), (1, 12)):
            e = u64(self.read_phys(table + ((va >> shift) & 0x1FF) * 8, 8))
            if not e & 1:
                return None
            if level == 1 or (level in (2, 3) and e & 0x80):
                size = 1 << shift
                base = e & addr_mask & ~(size - 1)
                return base | (va & (size - 1)), bool(e & cmask)
            table = e & addr_mask
        return None

    def tlb_fill(self, uc, vaddr, access, entry, _data):
        self.fills += 1
        if self.mode64 and self.fills % 4096 == 0 and uc.reg_read(X.UC_X86_REG_CR3) != self.cr3:
            self.cr3 = uc.reg_read(X.UC_X86_REG_CR3)
            self.walk_cache.clear()
        t = self.walk(vaddr)
        if t is None:
            return False  # the guest sees a page fault
        gpa, private = t
        page = gpa // PAGE
        fetch = access == unicorn.UC_MEM_FETCH
        if fetch or private:
            if page not in self.rmp.private or page not in self.rmp.validated:
                self.violation(f"private access ({'fetch' if fetch else 'data'}) to GPA {gpa:#x}: "
                               f"{'shared' if page not in self.rmp.private else 'not validated'}")
                return False
        elif page in self.rmp.private:
            self.violation(f"shared access to private GPA {gpa:#x}")
            return False
        entry.paddr = gpa & ~(PAGE - 1)
        entry.perms = unicorn.UC_PROT_ALL
        return True

    def flush_tlb(self):
        """After a page lost validation or became shared: translations cached before must be
        checked again."""
        self.walk_cache.clear()
        self.uc.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)

    def violation(self, what):
        self.violations.append(what)
        self.uc.emu_stop()

    def on_unmapped(self, uc, access, address, size, value, _data):
        self.violation(f"access to unmapped GPA {address:#x}")
        return False

    def on_interrupt(self, uc, intno, _data):
        rip = self.pc(uc)
        self.violation(f"exception {intno} at {rip:#x} not handled by the image")

    def on_port_io(self, uc, *args):
        rip = self.pc(uc)
        self.violation(f"IN/OUT instruction at {rip:#x}: under SNP it raises #VC")
        return 0

    # --- #VC for CPUID ------------------------------------------------------------------------

    def on_native_cpuid(self, uc, _data):
        self.violation(f"CPUID at {self.pc(uc):#x} executed without raising #VC")
        return 1

    def on_cpuid(self, uc):
        """CPUID at VMPL0 raises #VC (exit code 0x72): delivered through IDT vector 29, before
        the instruction executes (RIP = the CPUID)."""
        rip = self.pc(uc)
        if not uc.reg_read(X.UC_X86_REG_CR0) & (1 << 31):
            self.violation(f"CPUID at {rip:#x} before paging: a #VC there is a triple fault")
            return False
        _sel, idt, _limit, _flags = uc.reg_read(X.UC_X86_REG_IDTR)
        gate = self.read_phys(self.walk(idt + 29 * 16)[0], 16)
        handler = (struct.unpack_from("<H", gate, 0)[0] | (struct.unpack_from("<H", gate, 6)[0] << 16)
                   | (u32(gate, 8) << 32))
        ist = gate[4] & 7
        if not gate[5] & 0x80 or ist == 0:
            self.violation("IDT vector 29 (#VC) is not present or not on an IST stack")
            return False
        _sel, tss, _limit, _flags = uc.reg_read(X.UC_X86_REG_TR)
        stack = u64(self.read_phys(self.walk(tss + 36 + 8 * (ist - 1))[0], 8)) & ~0xF
        frame = struct.pack("<6Q", 0x72, rip, uc.reg_read(X.UC_X86_REG_CS),
                            uc.reg_read(X.UC_X86_REG_RFLAGS), uc.reg_read(X.UC_X86_REG_RSP),
                            uc.reg_read(X.UC_X86_REG_SS))
        gpa, private = self.walk(stack - 48)
        self.uc.mem_write(gpa, frame)
        uc.reg_write(X.UC_X86_REG_RSP, stack - 48)
        uc.reg_write(X.UC_X86_REG_RFLAGS, uc.reg_read(X.UC_X86_REG_RFLAGS) & ~0x200)
        uc.reg_write(X.UC_X86_REG_RIP, handler)
        self.events.append("vc-cpuid")
        return False

    # --- special instructions -----------------------------------------------------------------

    def hook_special_instructions(self):
        start, end = self.text
        text = self.read_phys(start, end - start)
        patterns = {
            b"\x0f\x30": self.on_wrmsr,
            b"\x0f\x32": self.on_rdmsr,
            b"\xf3\x0f\x01\xd9": self.on_vmgexit,
            b"\xf2\x0f\x01\xff": self.on_pvalidate,
            b"\xf3\x0f\x01\xfe": self.on_rmpadjust,
            b"\x0f\xa2": self.on_cpuid,
            b"\x0f\x01\xfe": self.on_invlpgb,
            b"\x0f\x01\xff": self.on_tlbsync,
        }
        for pat, fn in patterns.items():
            i = text.find(pat)
            while i >= 0:
                addr = start + i
                self.uc.hook_add(unicorn.UC_HOOK_CODE, self.code_hook(fn, len(pat)), None, addr, addr)
                i = text.find(pat, i + 1)
        # RDRAND / RDSEED (0F C7 /6, /7 with a register operand, optionally REX-prefixed): the
        # emulated CPU's answers come from the host's random source.
        i = text.find(b"\x0f\xc7")
        while i >= 0:
            modrm = text[i + 2] if i + 2 < len(text) else 0
            if modrm >= 0xF0:
                # Both readings (a REX prefix before it, or none): only the one that starts an
                # instruction fires.
                self.uc.hook_add(unicorn.UC_HOOK_CODE, self.code_hook(self.random_insn(None, modrm), 3),
                                 None, start + i, start + i)
                if i > 0 and 0x40 <= text[i - 1] <= 0x4F:
                    at = start + i - 1
                    self.uc.hook_add(unicorn.UC_HOOK_CODE,
                                     self.code_hook(self.random_insn(text[i - 1], modrm), 4), None, at, at)
            i = text.find(b"\x0f\xc7", i + 1)

    def code_hook(self, fn, length):
        def hook(uc, address, size, _data):
            # Unicorn reports 0xF1F1F1F1 for instructions its decoder does not know (the SNP
            # ones); an instruction starting with these bytes is this instruction.
            if size not in (length, 0xF1F1F1F1):
                return
            try:
                if fn(uc):
                    uc.reg_write(X.UC_X86_REG_RIP if self.mode64 else X.UC_X86_REG_EIP,
                                 address + length)
            except Stop:
                uc.emu_stop()
        return hook

    def pc(self, uc):
        return uc.reg_read(X.UC_X86_REG_RIP if self.mode64 else X.UC_X86_REG_EIP)

    def reg(self, r):
        return self.uc.reg_read(r)

    REGS = ["RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI",
            "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"]

    def random_insn(self, rex, modrm):
        def run(uc):
            index = (modrm & 7) + (8 if rex is not None and rex & 1 else 0)
            wide = rex is not None and rex & 8
            value = int.from_bytes(os.urandom(8 if wide else 4), "little")
            uc.reg_write(getattr(X, "UC_X86_REG_" + self.REGS[index]), value)
            uc.reg_write(X.UC_X86_REG_EFLAGS, (uc.reg_read(X.UC_X86_REG_EFLAGS) & ~0x8D5) | 1)
            self.events.append("rdseed" if modrm >= 0xF8 else "rdrand")
            return True
        return run

    def on_invlpgb(self, uc):
        if self.reg(X.UC_X86_REG_RAX) & 7:
            self.notes.append("INVLPGB with an address, PCID or ASID filter")
        self.flush_tlb()
        self.events.append("invlpgb")
        self.invlpgb_pending = True
        return True

    def on_tlbsync(self, uc):
        if not getattr(self, "invlpgb_pending", False):
            self.notes.append("TLBSYNC without an INVLPGB before it")
        self.invlpgb_pending = False
        return True

    def on_wrmsr(self, uc):
        ecx = self.reg(X.UC_X86_REG_ECX)
        value = (self.reg(X.UC_X86_REG_EDX) << 32) | self.reg(X.UC_X86_REG_EAX)
        if ecx == GHCB_MSR:
            self.ghcb_msr = value
            return True
        if ecx == EFER:
            if not value & EFER_SVME:
                self.violation("EFER written without SVME")
            uc.msr_write(EFER, value & ~EFER_SVME)
            return True
        return False  # FS base etc.: the CPU's own

    def on_rdmsr(self, uc):
        ecx = self.reg(X.UC_X86_REG_ECX)
        if ecx == GHCB_MSR:
            uc.reg_write(X.UC_X86_REG_RAX, self.ghcb_msr & 0xFFFFFFFF)
            uc.reg_write(X.UC_X86_REG_RDX, self.ghcb_msr >> 32)
            return True
        self.violation(f"RDMSR {ecx:#x}: intercepted under SNP (#VC)")
        return True

    def gpa_of(self, va):
        t = self.walk(va)
        if t is None:
            raise Stop()
        return t

    def on_pvalidate(self, uc):
        va, size, validate = self.reg(X.UC_X86_REG_RAX), self.reg(X.UC_X86_REG_RCX), self.reg(X.UC_X86_REG_RDX)
        gpa, private = self.gpa_of(va)
        pages = [gpa // PAGE + i for i in range(512 if size & 1 else 1)]
        flags = self.reg(X.UC_X86_REG_EFLAGS) & ~1
        if not private or any(p not in self.rmp.private for p in pages):
            uc.reg_write(X.UC_X86_REG_RAX, 1)  # FAIL_INPUT
        else:
            changed = False
            for p in pages:
                if (p in self.rmp.validated) != bool(validate & 1):
                    changed = True
                (self.rmp.validated.add if validate & 1 else self.rmp.validated.discard)(p)
            uc.reg_write(X.UC_X86_REG_RAX, 0)
            if not changed:
                flags |= 1
        uc.reg_write(X.UC_X86_REG_EFLAGS, flags)
        if not validate & 1:
            self.flush_tlb()
        return True

    def on_rmpadjust(self, uc):
        va, size, attrs = self.reg(X.UC_X86_REG_RAX), self.reg(X.UC_X86_REG_RCX), self.reg(X.UC_X86_REG_RDX)
        gpa, _ = self.gpa_of(va)
        vmpl, perms, vmsa = attrs & 0xFF, (attrs >> 8) & 0xFF, bool(attrs & (1 << 16))
        pages = [gpa // PAGE + i for i in range(512 if size & 1 else 1)]
        if not 1 <= vmpl <= 3 or any(p not in self.rmp.validated for p in pages):
            self.notes.append(f"RMPADJUST refused: GPA {gpa:#x} (VA {va:#x}) VMPL{vmpl}")
            uc.reg_write(X.UC_X86_REG_RAX, 1 if vmpl else 2)
            return True
        for p in pages:
            self.rmp.perms.setdefault(p, [0, 0, 0])[vmpl - 1] = perms
            (self.rmp.vmsa.add if vmsa else self.rmp.vmsa.discard)(p)
        uc.reg_write(X.UC_X86_REG_RAX, 0)
        return True

    # --- the hypervisor -----------------------------------------------------------------------

    def on_vmgexit(self, uc):
        msr = self.ghcb_msr
        code = msr & 0xFFF
        if self.ghcb_gpa is not None and msr == self.ghcb_gpa:
            self.ghcb_event()
            return True
        if code == 0x002:  # SEV information
            self.ghcb_msr = (2 << 48) | (1 << 32) | (CBIT << 24) | 0x001
        elif code == 0x012:  # GHCB registration
            gfn = msr >> 12
            if self.scenario == "no-ghcb":
                self.ghcb_msr = 0x013 | (0xFFFF_FFFF << 12)
            else:
                self.ghcb_gpa = gfn * PAGE
                self.ghcb_msr = 0x013 | (gfn << 12)
        elif code == 0x014:  # page-state change, one page
            gfn, op = (msr >> 12) & ((1 << 40) - 1), (msr >> 52) & 0xF
            self.pending_flush = False
            self.page_state(gfn, op)
            if self.pending_flush:
                self.flush_tlb()
            self.ghcb_msr = 0x015
        elif code == 0x016:  # Run VMPL
            vmpl = (msr >> 32) & 0xFF
            self.ghcb_msr = 0x017
            self.run_guest(vmpl)
        elif code == 0x080:  # HV features: SNP, AP creation, multi-VMPL
            features = 0b000011 if self.scenario == "no-multi-vmpl" else 0b100011
            self.ghcb_msr = 0x081 | (features << 12)
        elif code == 0x100:  # termination
            self.terminated = {"set": (msr >> 12) & 0xF, "code": (msr >> 16) & 0xFF}
            raise Stop()
        else:
            self.violation(f"unknown GHCB MSR request {msr:#x}")
            raise Stop()
        return True

    def page_state(self, gfn, op):
        was_usable = gfn in self.rmp.validated or gfn not in self.rmp.private
        if op == 1:
            self.rmp.private.add(gfn)
            self.rmp.validated.discard(gfn)
        elif op == 2:
            self.rmp.private.discard(gfn)
            self.rmp.validated.discard(gfn)
            self.rmp.perms.pop(gfn, None)
        if was_usable:
            self.pending_flush = True

    def ghcb_event(self):
        g = bytearray(self.read_phys(self.ghcb_gpa, PAGE))
        if self.ghcb_gpa // PAGE in self.rmp.private:
            self.violation("the GHCB page is private")
            raise Stop()
        exit_code, info1, info2 = u64(g, G_EXIT_CODE), u64(g, G_INFO1), u64(g, G_INFO2)
        result1, result2 = 0, 0

        def setf(off, v):
            struct.pack_into("<Q", g, off, v)
            g[G_VALID + off // 64] |= 1 << ((off // 8) % 8)

        self.pending_flush = False
        if exit_code == 0x7B:  # IOIO
            port, is_in = info1 >> 16, info1 & 1
            if is_in:
                v = 0
                if port == 0x61:
                    self.pit_reads += 1
                    v = 0x20 if self.pit_reads > 3 else 0
                setf(G_RAX, v)
            elif port == 0x3F8:
                self.log.append(u64(g, G_RAX) & 0xFF)
        elif exit_code == 0x8000_0010:  # page-state change
            d = G_SHARED
            cur, end_ = struct.unpack_from("<HH", g, d)
            for i in range(cur, end_ + 1):
                e = u64(g, d + 8 + 8 * i)
                self.page_state((e >> 12) & ((1 << 40) - 1), (e >> 52) & 0xF)
            # A hostile host may claim it made no progress (the SVSM must not loop for ever).
            struct.pack_into("<H", g, d, 0 if self.scenario == "hostile-psc" else end_ + 1)
            result2 = 0
        elif exit_code == 0x8000_0013:  # AP creation
            apic, vmpl, event = info1 >> 32, (info1 >> 16) & 0xFF, info1 & 0xFFFF
            page = info2 // PAGE
            if event == 1 and page not in self.rmp.vmsa:
                result1, result2 = 2, 1
            else:
                self.ap_created.append({"apic_id": apic, "vmpl": vmpl, "event": event, "vmsa": info2,
                                        "sev_features": u64(g, G_RAX)})
        elif exit_code in (0x8000_0011, 0x8000_0012):
            result2 = self.guest_request(info1, info2)
            if exit_code == 0x8000_0012:
                certs, npages = u64(g, G_RAX), u64(g, G_RBX)
                if npages:
                    self.uc.mem_write(certs, bytes(PAGE))
        else:
            self.violation(f"GHCB event {exit_code:#x} not expected")
            raise Stop()
        setf(G_INFO1, result1)
        setf(G_INFO2, result2)
        self.uc.mem_write(self.ghcb_gpa, bytes(g))
        if self.pending_flush:
            self.flush_tlb()

    # --- the PSP ------------------------------------------------------------------------------

    def guest_request(self, req_gpa, rsp_gpa):
        if self.guest_step > 0 and self.ap_created:
            # A call being served: the SVSM must keep the caller's VMSA from running while it
            # edits it (EFER.SVME clear), here in the middle of the call.
            efer = u64(self.read_phys(self.ap_created[-1]["vmsa"] + V_EFER, 8))
            if efer & EFER_SVME:
                self.violation("the caller's VMSA is runnable (EFER.SVME) while its call is served")
            self.events.append("svme-clear-during-call")
        req = self.read_phys(req_gpa, PAGE)
        seqno = u64(req, 0x20)
        algo, _hv, _hs, mtype, mver, msize = struct.unpack_from("<BBHBBH", req, 0x30)
        if seqno != self.psp_seqno + 1 or req[0x3C] != 0 or algo != 1:
            return 0x16  # INVALID_PARAMS: the VMPCK would be disabled on hardware
        aes = AESGCM(self.vmpck0)
        iv = struct.pack("<Q", seqno) + bytes(4)
        plain = aes.decrypt(iv, req[0x60 : 0x60 + msize] + req[0:16], req[0x30:0x60])
        if mtype == 5:  # MSG_REPORT_REQ
            report = bytearray(1184)
            struct.pack_into("<IIQ", report, 0, 3, 1, 0x30000)
            struct.pack_into("<I", report, 0x30, u32(plain, 64))  # VMPL
            report[0x50:0x90] = plain[0:64]  # REPORT_DATA
            struct.pack_into("<Q", report, 0x38, 0x5400000000000A)  # current TCB
            struct.pack_into("<Q", report, 0x1E0, 0x5400000000000A)  # committed TCB
            body = struct.pack("<II24x", 0, 1184) + bytes(report)
            self.events.append("report")
        elif mtype == 3:  # MSG_KEY_REQ
            body = struct.pack("<I28x", 0) + hashlib.sha256(self.vmpck0 + bytes(plain)).digest()
            self.events.append("key")
        else:
            return 0x16
        self.psp_seqno = seqno + 1
        hdr = bytearray(0x60)
        # A replayed or forged response carries another sequence number.
        reply_seqno = seqno + (3 if self.scenario == "bad-psp-seqno" else 1)
        struct.pack_into("<Q", hdr, 0x20, reply_seqno)
        struct.pack_into("<BBHBBH", hdr, 0x30, 1, 1, 0x60, mtype + 1, mver, len(body))
        iv = struct.pack("<Q", reply_seqno) + bytes(4)
        sealed = aes.encrypt(iv, body, bytes(hdr[0x30:0x60]))
        hdr[0:16] = sealed[-16:]
        self.uc.mem_write(rsp_gpa, bytes(hdr) + sealed[:-16])
        return 0

    # --- the guest at VMPL1 -------------------------------------------------------------------

    def guest_call(self, vmsa, caa, rax, rcx=0, rdx=0, r8=0, r9=0):
        self.uc.mem_write(caa, b"\x01")
        for off, v in ((V_RAX, rax), (V_RCX, rcx), (V_RDX, rdx), (V_R8, r8), (V_R9, r9)):
            self.uc.mem_write(vmsa + off, struct.pack("<Q", v))
        self.uc.mem_write(vmsa + V_EXIT_CODE, struct.pack("<Q", 0x403))
        self.pending = (rax, rcx, rdx, r8, r9)

    def run_guest(self, vmpl):
        """The SVSM asked to run VMPL`vmpl`: check the last call's result, make the next call."""
        self.run_vmpl_count += 1
        if vmpl != 1 or not self.ap_created:
            self.violation(f"Run VMPL{vmpl} before the guest's VMSA exists")
            raise Stop()
        ap = self.ap_created[-1]
        vmsa = ap["vmsa"]
        v = self.read_phys(vmsa, PAGE)
        info = self.boot_info
        caa, secrets = info["caa"], info["secrets"]
        if self.guest_step == 0:
            # What the guest finds before its first instruction.
            s = self.read_phys(secrets, PAGE)
            self.checks = {
                "vmsa_vmpl": v[V_VMPL],
                "vmsa_rip": u64(v, V_RIP),
                "vmsa_efer": u64(v, V_EFER),
                "vmsa_is_vmsa_in_rmp": vmsa // PAGE in self.rmp.vmsa,
                "vmsa_sev_features": u64(v, V_SEV_FEATURES),
                "secrets_vmpck0_zero": s[0x20:0x40] == bytes(32),
                "secrets_vmpck1_kept": s[0x40:0x60] != bytes(32),
                "secrets_svsm_base": u64(s, 0x140),
                "secrets_svsm_size": u64(s, 0x148),
                "secrets_svsm_caa": u64(s, 0x150),
                "secrets_svsm_max_version": u32(s, 0x158),
                "secrets_svsm_guest_vmpl": s[0x15C],
                "guest_cpuid_copied": self.read_phys(info["cpuid"], PAGE) == self.read_phys(self.cpuid_gpa, PAGE),
                "firmware_vmpl1_perms": self.rmp.perms.get(info["firmware"] // PAGE, [0])[0],
                "caa_vmpl1_perms": self.rmp.perms.get(caa // PAGE, [0])[0],
                "prevalidated_vmpl1_perms": self.rmp.perms.get(0x800000 // PAGE, [0])[0],
                "ap": ap,
            }
        else:
            result = {
                "rax": u64(v, V_RAX), "rcx": u64(v, V_RCX), "rdx": u64(v, V_RDX),
                "r8": u64(v, V_R8), "r9": u64(v, V_R9),
                "call_pending": self.read_phys(caa, 1)[0],
                "svme": bool(u64(v, V_EFER) & EFER_SVME),
            }
            self.calls[-1]["result"] = result
            if self.calls[-1]["name"] == "vtpm-send-getrandom":
                buf = self.read_phys(0x801000, 64)
                self.calls[-1]["response_size"] = u32(buf, 0)
                self.calls[-1]["tpm_response"] = buf[4:4 + 26].hex()
            if self.calls[-1]["name"] == "attest-services":
                report = self.read_phys(0x804000, 1184)
                nonce = self.read_phys(0x805000, 64)
                manifest = self.read_phys(0x806000, min(result["rcx"], 0x3000))
                self.calls[-1]["manifest_size"] = result["rcx"]
                self.calls[-1]["manifest"] = manifest.hex()
                self.calls[-1]["report_vmpl"] = u32(report, 0x30)
                self.calls[-1]["report_data_binds"] = (
                    report[0x50:0x90] == hashlib.sha512(nonce + manifest).digest())
            if self.calls[-1]["name"] == "core-pvalidate-guest-page":
                p = 0x880000 // PAGE
                self.calls[-1]["rmp"] = {"validated": p in self.rmp.validated,
                                         "vmpl1": self.rmp.perms.get(p, [0])[0]}
        script = self.script()
        if self.guest_step >= len(script):
            self.done = True
            raise Stop()
        name, regs, prepare = script[self.guest_step]
        if prepare:
            prepare()
        self.calls.append({"name": name, "rax": regs[0]})
        self.guest_call(vmsa, caa, *regs)
        self.guest_step += 1

    def guest_write(self, gpa, data):
        self.uc.mem_write(gpa, data)

    def script(self):
        buf = 0x801000  # in OVMF's pre-validated SEC memory: the SVSM granted it to VMPL1
        lst = 0x802000

        def tpm(cmd):
            def prep():
                self.guest_write(buf, struct.pack("<IB", 8, 0) + struct.pack("<I", len(cmd)) + cmd)
            return prep

        def pvalidate_list():
            # The guest made 0x880000 private (its own page-state change) and asks the SVSM to
            # validate it: the PVALIDATE list layout of the SVSM spec, byte by byte.
            self.page_state(0x880000 // PAGE, 1)
            self.guest_write(lst, struct.pack("<HHI", 1, 0, 0) + struct.pack("<Q", 0x880000 | (1 << 2)))

        def svsm_page_list():
            self.guest_write(lst, struct.pack("<HHI", 1, 0, 0) + struct.pack("<Q", self.boot_info["svsm_base"] | (1 << 2)))

        def attest_request():
            # SVSM spec, ATTEST_SERVICES: report, nonce, manifest and certificate buffers in
            # the guest's pre-validated memory.
            self.guest_write(0x805000, os.urandom(64))
            self.guest_write(0x803000, struct.pack("<QI4xQH6xQI4xQI4x",
                                                   0x804000, 0x1000, 0x805000, 64,
                                                   0x806000, 0x3000, 0x80A000, 0x3000))

        startup = bytes.fromhex("80010000000c000001440000")
        getrandom = bytes.fromhex("80010000000c0000017b0010")
        return [
            ("core-query-protocol-vtpm", ((0 << 32) | 6, (2 << 32) | 1), None),
            ("vtpm-query", ((2 << 32) | 0,), None),
            ("vtpm-send-startup", ((2 << 32) | 1, buf), tpm(startup)),
            ("vtpm-send-getrandom", ((2 << 32) | 1, buf), tpm(getrandom)),
            ("attest-services", ((1 << 32) | 0, 0x803000), attest_request),
            ("core-pvalidate-guest-page", ((0 << 32) | 1, lst), pvalidate_list),
            ("core-pvalidate-svsm-page", ((0 << 32) | 1, lst), svsm_page_list),
            # A second vCPU: this build serves one (no VMPL0 context for APs).
            ("core-create-vcpu-ap1", ((0 << 32) | 2, 0x881000, 0x800000, 1), None),
            ("unknown-protocol", ((9 << 32) | 0,), None),
        ]

    # --- run ----------------------------------------------------------------------------------

    def run(self, timeout):
        bi = self.read_phys(self.entry_rbx - PAGE, 0x168)
        self.boot_info = {
            "svsm_base": u64(bi, 8), "svsm_size": u64(bi, 16), "firmware": u64(bi, 0x30),
            "secrets": u64(bi, 0x50), "cpuid": u64(bi, 0x58), "caa": u64(bi, 0x60),
        }
        start = time.time()
        self.long_mode = None
        self.uc.emu_start(self.entry_rip, 0, timeout=int(timeout * 1_000_000))
        if self.long_mode and not (self.terminated or self.violations):
            self.switch_to_64()
            left = max(1.0, timeout - (time.time() - start))
            self.uc.emu_start(self.long_mode["rip"], 0, timeout=int(left * 1_000_000))
        elapsed = time.time() - start
        if self.done:
            outcome = "script-done"
        elif self.terminated:
            outcome = "terminated"
        elif self.violations:
            outcome = "violation"
        else:
            outcome = "stopped"
        return {
            "outcome": outcome,
            "terminated": self.terminated,
            "violations": self.violations,
            "log": self.log.decode("utf-8", "replace"),
            "calls": self.calls,
            "checks": getattr(self, "checks", None),
            "events": sorted(set(self.events)),
            "notes": self.notes[:20],
            "run_vmpl": self.run_vmpl_count,
            "rip": self.uc.reg_read(X.UC_X86_REG_RIP if self.mode64 else X.UC_X86_REG_EIP),
            "seconds": round(elapsed, 1),
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--igvm", required=True)
    ap.add_argument("--scenario", default="normal",
                    choices=["normal", "no-cbit", "bad-memory-map", "no-ghcb", "hostile-psc",
                             "bad-psp-seqno", "no-invlpgb", "no-multi-vmpl"])
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    with open(args.igvm, "rb") as f:
        m = Machine(f.read(), args.scenario)
    try:
        result = m.run(args.timeout)
    except unicorn.UcError as e:
        result = {"outcome": "emulator-error", "error": str(e), "violations": m.violations,
                  "log": m.log.decode("utf-8", "replace"),
                  "rip": m.uc.reg_read(X.UC_X86_REG_RIP if m.mode64 else X.UC_X86_REG_EIP),
                  "terminated": m.terminated}
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
