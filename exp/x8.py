from common import *
from sklearn.linear_model import Ridge, LogisticRegression
from sklearn.model_selection import StratifiedKFold
dev=load('dev_routing'); gold=load('train_gold'); Ed=E('dev_routing'); Eg=E('train_gold')
yg=np.array([gain(r) for r in gold]); Fd=F([r['prompt'] for r in dev]); Fg=F([r['prompt'] for r in gold])
mu,sd=Fg.mean(0),Fg.std(0)+1e-6; Zg=(Fg-mu)/sd; Zd=(Fd-mu)/sd
cats=sorted(set(r['category'] for r in gold)); ci={c:k for k,c in enumerate(cats)}
y=np.array([ci[r['category']] for r in gold])
def subj(tr,Q,C=10,lam=10):
    clf=LogisticRegression(C=C,max_iter=2000).fit(Eg[tr],y[tr])
    glob=yg[tr].mean(); sg=np.array([(yg[tr][y[tr]==k].sum()+lam*glob)/((y[tr]==k).sum()+lam) for k in clf.classes_])
    return clf.predict_proba(Q)@sg
skf=list(StratifiedKFold(5,shuffle=True,random_state=0).split(Eg,y))
oof=np.zeros(len(gold))
for tr,te in skf: oof[te]=subj(tr,Eg[te])
pd_=subj(np.arange(len(gold)),Ed)
np.save('exp/subj_oof.npy',oof); np.save('exp/subj_dev.npy',pd_)
report(gold,oof,'CV subj'); report(dev,pd_,'dev subj')
for a in [30,100,300]:
  for wsub in [1,3,10]:
    Xg=np.hstack([Eg,Zg,wsub*oof[:,None]]); Xd=np.hstack([Ed,Zd,wsub*pd_[:,None]])
    m=Ridge(alpha=a).fit(Xg,yg); report(dev,m.predict(Xd),f'stack a={a} w={wsub}')
