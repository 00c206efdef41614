import json, hashlib, numpy as np, sys
sys.path.insert(0,'exp')
from feats import F, NAMES
D='/work/shared/data/routing/'
def load(f): return [json.loads(l) for l in open(D+f+'.jsonl')]
def E(f): return np.load(f'exp/{f}.npy')
def metrics(rows, diff):
    # port of route_eval.metrics for rows with w
    n=len(rows)
    keys=[hashlib.sha256(r['id'].encode()).hexdigest() for r in rows]
    order=sorted(range(n), key=lambda i:(-diff[i], keys[i]))
    w=np.array([r.get('w',1.0) for r in rows]); ws=np.array([r['weak_score'] for r in rows],float); ss=np.array([r['strong_score'] for r in rows],float)
    tw=w.sum(); W=(w*ws).sum()/tw; S=(w*ss).sum()/tw
    o=np.array(order)
    qs=np.concatenate([[W],W+np.cumsum(w[o]*(ss[o]-ws[o]))/tw]); cs=np.concatenate([[0],np.cumsum(w[o])/tw])
    gap=S-W; pgr=(qs-W)/gap
    apgr=((pgr[1:]+pgr[:-1])/2*np.diff(cs)).sum()
    def first(m):
        idx=np.nonzero(m)[0]; return cs[idx[0]] if len(idx) else 1.0
    return dict(APGR=apgr,CPT50=first(pgr>=0.5),CPT80=first(pgr>=0.8),saved95=1-first(qs>=0.95*S-1e-12))
def report(rows, diff, label=''):
    diff=np.asarray(diff,float)
    groups={}
    for i,r in enumerate(rows): groups.setdefault(r['source'],[]).append(i)
    out={}
    mix=[]; mixd=[]
    for s,idx in sorted(groups.items()):
        R=[rows[i] for i in idx]; out[s]=metrics(R,diff[idx])
        judge=R[0]['score_type']!='correct_0_1'
        for i in idx:
            r=dict(rows[i]); 
            if judge: r['weak_score']=(r['weak_score']-1)/9; r['strong_score']=(r['strong_score']-1)/9
            r['w']=1/len(idx); mix.append(r); mixd.append(diff[i])
    if len(groups)>1: out['MIX']=metrics(mix,np.array(mixd))
    print(label.ljust(28)+'  '.join(f"{s[-6:]}:{m['APGR']:.3f}/{m['saved95']:.0%}" for s,m in out.items()))
    return out
def gain(r):
    j=r['score_type']!='correct_0_1'
    return (r['strong_score']-r['weak_score'])/(9 if j else 1)
