from common import *
from sklearn.linear_model import Ridge, LogisticRegression
dev=load('dev_routing'); gold=load('train_gold'); Ed=E('dev_routing'); Eg=E('train_gold')
yg=np.array([gain(r) for r in gold])
cats=sorted(set(r['category'] for r in gold)); ci={c:k for k,c in enumerate(cats)}
y=np.array([ci[r['category']] for r in gold])
def centroid_prior(tr, Q, T, lam=10):
    C=np.stack([Eg[tr][y[tr]==k].mean(0) for k in range(len(cats))]); C/=np.linalg.norm(C,axis=1,keepdims=True)
    glob=yg[tr].mean(); sg=np.array([(yg[tr][y[tr]==k].sum()+lam*glob)/((y[tr]==k).sum()+lam) for k in range(len(cats))])
    S=Q@C.T/T; S-=S.max(1,keepdims=True); P=np.exp(S); P/=P.sum(1,keepdims=True); return P@sg
mm=[i for i,r in enumerate(dev) if r['source']=='routellm-mmlu']; M=[dev[i] for i in mm]
for T in [0.02,0.05,0.1]:
    report(dev,centroid_prior(np.arange(len(gold)),Ed,T),f'centroid T={T}')
