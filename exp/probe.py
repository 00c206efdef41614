import sys; sys.argv=['x','1']
exec(open('exp/embed.py').read().split("for f in ['dev_routing'")[0])
from rust_heads import *
import json
H=json.load(open('models/classifier-heads.json'))
P=[json.loads(l) for l in open('/tmp/probe.jsonl') if 'prompt' in l]
Em=emb([p['prompt'] for p in P])
exam,pchat,prior=parts(P,Em)
ph=1/(1+np.exp(-(Em@np.array(H['hard']['weights'])+H['hard']['bias'])))
for p,a,b,c,d in zip(P,exam,pchat,ph,prior): print(p['id'],'exam %.3f pchat %.3f phard %.3f prior %.3f'%(a,b,c,d))
