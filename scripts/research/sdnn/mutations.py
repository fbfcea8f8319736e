"""Each plausible mistake in the mirror must break the match (the comparison can fail). python mutations.py"""
import numpy as np
import mirror

def check(folder, label):
    layers = mirror.read(f"{folder}/network.net"); inputs = np.load(f"{folder}/inputs.npz")["inputs"]
    lava = np.load(f"{folder}/lava_out.npz")
    mine = mirror.run(layers, inputs)
    diff = sum(int((m != lava[f"msg_{k}"]).sum()) for k, m in enumerate(mine))
    print(f"{label:55s} {folder:6s}: {diff} messages differ")


def main():
    check("proto", "unmodified")
    # 1. strict threshold (|delta| > vth, as the docstrings say) instead of >=
    src = open("mirror.py").read()
    ns = {}
    exec(compile(src.replace(">= lay[\"vth\"]", "> lay[\"vth\"]"), "m1", "exec"), ns)
    m1 = type(mirror)("m1"); m1.__dict__.update(ns)
    for f in ("proto", "v1"):
        layers = m1.read(f"{f}/network.net"); inp = np.load(f"{f}/inputs.npz")["inputs"]; lava = np.load(f"{f}/lava_out.npz")
        print(f"{'threshold |delta| > vth instead of >=':55s} {f:6s}: {sum(int((m != lava[f'msg_{k}']).sum()) for k, m in enumerate(m1.run(layers, inp)))} messages differ")
    # 2. conv saturates instead of wrapping
    exec(compile(src.replace("return wrap(conv(msg", "return np.clip(conv(msg").replace("lay[\"padding\"]), 24)", "lay[\"padding\"]), -(1 << 23), (1 << 23) - 1)"), "m2", "exec"), ns2 := {})
    layers = ns2["read"]("wrap/network.net"); inp = np.load("wrap/inputs.npz")["inputs"]; lava = np.load("wrap/lava_out.npz")
    print(f"{'conv sum saturated instead of wrapped to 24 bits':55s} {'wrap':6s}: {sum(int((m != lava[f'msg_{k}']).sum()) for k, m in enumerate(ns2['run'](layers, inp)))} messages differ")
    # 3. message rounded (residue keeps the low 6 bits) instead of floored
    exec(compile(src.replace("cur.append(s >> STATE_EXP)", "cur.append((s + 32) >> STATE_EXP)"), "m3", "exec"), ns3 := {})
    layers = ns3["read"]("proto/network.net"); inp = np.load("proto/inputs.npz")["inputs"]; lava = np.load("proto/lava_out.npz")
    print(f"{'message rounded instead of floored (s >> 6)':55s} {'proto':6s}: {sum(int((m != lava[f'msg_{k}']).sum()) for k, m in enumerate(ns3['run'](layers, inp)))} messages differ")
    # 4. bias not scaled by 2^12 (only 2^6, as CUBA)
    exec(compile(src.replace("(bias << (SPIKE_EXP + STATE_EXP))", "(bias << STATE_EXP)"), "m4", "exec"), ns4 := {})
    layers = ns4["read"]("proto/network.net")
    print(f"{'bias << 6 instead of << 12':55s} {'proto':6s}: {sum(int((m != lava[f'msg_{k}']).sum()) for k, m in enumerate(ns4['run'](layers, inp)))} messages differ")


if __name__ == "__main__":  # Lava's compiler imports every .py next to a Process file
    main()
