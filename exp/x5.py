from common import *
dev=load('dev_routing'); gold=load('train_gold')
import collections
g=collections.defaultdict(list)
for r in gold: g[r['category']].append(gain(r))
gm={k:np.mean(v) for k,v in g.items()}
mm=[i for i,r in enumerate(dev) if r['source']=='routellm-mmlu']
M=[dev[i] for i in mm]
print('dev cats in gold', np.mean([r['category'] in gm for r in M]))
report(M,[gm.get(r['category'],0.1) for r in M],'subject prior (oracle cat)')
d=collections.defaultdict(list)
for r in M: d[r['category']].append(gain(r))
report(M,[np.mean(d[r['category']]) for r in M],'dev subject mean (cheat)')
print(np.corrcoef([gm[k] for k in d if k in gm],[np.mean(d[k]) for k in d if k in gm])[0,1])
